"""Speed and memory of training, evaluation and sampling (not a test).

    python benchmarks/benchmark.py --data_dir=../shared/data --json=benchmarks/results.json

Each case runs in its own process (so that its peak resident memory is its
own) and is timed after warm-up: median, min and max seconds over --repeats
runs. Cases: a training step (the paper's mnist preset at batch 32 and 8, the
celeb_a preset at batch 4), in float32 and mixed_bfloat16, and at batch 32 with
per-step recomputation (also with the batch in 8 micro-batches, and
glibc's malloc limited to 2 arenas), and with XLA on and off; IWAE-128 on one
image; sampling, per image; the training loop's step time with its input
pipeline, summaries and checkpoints, against the bare step; and the input
pipelines' images/s; and one training step of each preset as it trains
(``--only=preset``, the README's hardware table). On a GPU the peak device
memory is reported too.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from vnca_tf import configs

flags.DEFINE_string("data_dir", None, "Folder of the original dataset files.")
flags.DEFINE_integer("repeats", 3, "Timed runs per case, after warm-up.")
flags.DEFINE_string(
    "json",
    None,
    "Also write the results to this JSON file (the cases "
    "that ran replace theirs; the others are kept).",
)
flags.DEFINE_string("case", None, "Run one case in this process (used internally).")
flags.DEFINE_list("only", [], "Run only the cases whose names start with these.")
FLAGS = flags.FLAGS

PRECISIONS = ("float32", "mixed_bfloat16")
# One training step of each preset as it trains (the README's hardware table).
PRESETS = (
    "mnist",
    "celeb_a",
    "celeb_a_beta100",
    "mnist_damage",
    "celeb_a_damage",
    "mnist_baseline",
    "celeb_a_baseline",
    "mnist_cpu",
    "mnist_damage_cpu",
    "mnist_heal_cpu",
    "mnist_regrow_cpu",
    "mnist_regrow_long_cpu",
)
CASES = (
    [f"train:mnist:{batch}:{precision}" for batch in (32, 8) for precision in PRECISIONS]
    + [f"train:mnist:32:{precision}:recompute" for precision in PRECISIONS]
    + [
        f"train:mnist:32:{precision}:recompute:microbatches=8:MALLOC_ARENA_MAX=2"
        for precision in PRECISIONS
    ]
    + ["train:mnist:32:mixed_bfloat16:recompute:microbatches=8"]
    + [
        f"train:mnist:32:{precision}:jit_compile={jit}"
        for precision in PRECISIONS
        for jit in ("on", "off")
    ]
    + [f"train:celeb_a:4:{precision}" for precision in PRECISIONS]
    + [f"iwae128:mnist:1:{precision}" for precision in PRECISIONS]
    + ["sample:mnist:8:float32", "sample:celeb_a:8:float32", "loop:mnist:8:float32", "data"]
    + [f"preset:{name}:{configs.get_preset(name).train.batch_size}:float32" for name in PRESETS]
)


def _settings(case):
    """A case's ``name=value`` options: lower-case names are training options,
    upper-case ones environment variables of the case's process."""
    return dict(option.split("=") for option in case.split(":") if "=" in option)


def _timed(function, repeats):
    function()  # Warm-up: tracing, compilation, allocator growth.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def _peaks():
    import tensorflow as tf

    peaks = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    if tf.config.list_logical_devices("GPU"):
        peaks["peak_gpu_gb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9
    return peaks


def preset_and_images(name, batch, data_dir):
    """The preset at this batch size (logging every step, a checkpoint every 5)
    and a few cached test batches of its data."""
    import dataclasses

    from vnca_tf import configs, data

    preset = configs.get_preset(name)
    preset = dataclasses.replace(
        preset,
        train=dataclasses.replace(
            preset.train,
            batch_size=batch,
            log_every=1,
            validation_every=10_000,
            image_every=10_000,
            checkpoint_every=5,
        ),
    )
    images = (
        data.load_split(
            preset.dataset, "test", data_dir=data_dir, image_size=preset.model.image_shape[0]
        )
        .take(max(batch, 16) * 4)
        .cache()
    )
    return preset, images


def training_step(preset, images, precision, recompute=False, microbatches=1, jit_compile="auto"):
    """(trainer, a function running one training step on a fixed batch)."""
    from vnca_tf.configs import RunConfig
    from vnca_tf.training.loop import Trainer

    trainer = Trainer(
        preset,
        tempfile.mkdtemp(),
        dataset=images,
        validation_dataset=images,
        run=RunConfig(
            precision=precision,
            recompute=recompute,
            microbatches=microbatches,
            jit_compile=jit_compile,
        ),
    )
    batch_images = next(trainer.inputs.batches(0))
    return trainer, lambda: float(trainer.step_function(batch_images)["loss"])


def _loop_step_seconds(trainer, steps=10):
    """Seconds per step of Trainer.train (input pipeline, a summary every step,
    a checkpoint every 5), without the validation, images and checkpoint that
    end every train() call: the time of a call of 1 + steps steps less that of
    a call of 1 step, over steps."""

    def train(count):
        start = time.perf_counter()
        trainer.train(int(trainer.state.step.numpy()) + count, progress=False)
        return time.perf_counter() - start

    train(1)  # Warm-up: traces validation and image summaries.
    return (train(1 + steps) - train(1)) / steps


def run_case(case):
    """Times one case in this process; returns its result dict."""
    if case == "data":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import data_pipeline

        return {
            "case": case,
            "pipelines": [data_pipeline.measure(*c, FLAGS.data_dir) for c in data_pipeline.CASES],
        }
    import tensorflow as tf

    from vnca_tf.models import build_model

    kind, name, batch, precision, *options = case.split(":")
    batch, recompute = int(batch), "recompute" in options
    microbatches = int(_settings(case).get("microbatches", 1))
    jit_compile = _settings(case).get("jit_compile", "auto")
    preset, images = preset_and_images(name, batch, FLAGS.data_dir)
    result = {
        "case": case,
        "kind": kind,
        "preset": name,
        "batch": batch,
        "precision": precision,
        "recompute": recompute,
        "microbatches": microbatches,
        "jit_compile": jit_compile,
    }
    if kind in ("train", "loop", "preset"):
        trainer, step = training_step(
            preset, images, precision, recompute, microbatches, jit_compile
        )
        result.update(_timed(step, FLAGS.repeats))
        if kind == "loop":  # The whole loop: pipeline, summaries, checkpoints.
            result["loop_step_s"] = _loop_step_seconds(trainer)
    else:
        model = build_model(preset.model, precision)
        if kind == "iwae128":
            one = next(iter(images.batch(1)))
            iwae = tf.function(model.iwae)
            result.update(
                _timed(
                    lambda: float(iwae(one, 128, seed=tf.constant([0, 0]), chunk_size=16)[0]),
                    FLAGS.repeats,
                )
            )
        else:
            result.update(
                _timed(lambda: float(tf.reduce_sum(model.sample(batch, seed=0)[1])), FLAGS.repeats)
            )
            result["per_image_s"] = result["median_s"] / batch
    result.update(_peaks())
    return result


def _describe(result):
    if result["case"] == "data":
        return "\n".join(
            f"  data {p['dataset']:<16} {p['steady_images_per_s']:>12,.0f} img/s"
            for p in result["pipelines"]
        )
    line = (
        f"  {result['case']:<32} median {result['median_s']:8.2f} s  "
        f"(min {result['min_s']:.2f}, max {result['max_s']:.2f})  "
        f"peak RSS {result['peak_rss_gb']:.2f} GB"
    )
    if "loop_step_s" in result:
        line += f"  with pipeline+summaries+checkpoints {result['loop_step_s']:.2f} s/step"
    if "peak_gpu_gb" in result:
        line += f"  peak GPU {result['peak_gpu_gb']:.2f} GB"
    return line


def main(argv):
    del argv
    if FLAGS.case:
        print("RESULT " + json.dumps(run_case(FLAGS.case)))
        return
    results = []
    for case in CASES:
        if FLAGS.only and not any(case.startswith(prefix) for prefix in FLAGS.only):
            continue
        output = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                f"--case={case}",
                f"--repeats={FLAGS.repeats}",
            ]
            + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else []),
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                **{k: v for k, v in _settings(case).items() if k.isupper()},
            },
        )
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if output.returncode or not lines:
            print(f"  {case}: failed\n{output.stderr[-2000:]}")
            continue
        results.append(json.loads(lines[-1][len("RESULT ") :]))
        print(_describe(results[-1]), flush=True)
    if FLAGS.json:
        import platform

        ran = {result["case"] for result in results}
        kept = []
        if os.path.exists(FLAGS.json):
            with open(FLAGS.json) as f:
                kept = [r for r in json.load(f)["results"] if r["case"] not in ran]
        order = {case: index for index, case in enumerate(CASES)}
        merged = sorted(kept + results, key=lambda r: order.get(r["case"], len(order)))
        with open(FLAGS.json, "w") as f:
            json.dump(
                {
                    "machine": {
                        "processor": platform.processor(),
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                    "results": merged,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    app.run(main)
