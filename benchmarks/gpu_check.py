"""The first hour on a GPU machine, in one command: install, list the devices,
run the GPU tests, time the cases that matter, train 200 steps, and write one
JSON with all of it (under 8 minutes on one modern GPU).

    python benchmarks/gpu_check.py --data_dir=.gpu_data            # on the GPU machine
    python benchmarks/gpu_check.py --dry_run --output=/tmp/check   # anywhere: what it would run

Only the standard library runs in this process (it works before the install);
every step is a command of its own, recorded in OUTPUT/gpu_check.json with
its status, seconds and results:

1. install: pip install -e ".[test]" (--no_install keeps the environment);
2. devices: TensorFlow's version and build (CUDA, cuDNN), the GPUs and their
   compute capability;
3. gpu_tests: python -m pytest -m gpu (tests/test_gpu.py), pass/fail counts;
4. benchmarks: benchmarks/benchmark.py's training step of the mnist preset at
   batch 32 in float32 with XLA off and on and in mixed_bfloat16, IWAE-128 and
   sampling, each with its peak device memory;
5. train: python train.py --dataset=binarized_mnist for 200 steps, with its
   step rate and the TensorBoard scalars it wrote.

--dry_run (or a machine without a GPU, where it is required) runs steps 1-2
only as far as a CPU allows: the devices are listed, the GPU steps are
recorded as skipped with their commands.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK_CASES = (
    "train:mnist:32:float32:jit_compile=off",
    "train:mnist:32:float32:jit_compile=on",
    "train:mnist:32:mixed_bfloat16:jit_compile=on",
    "iwae128:mnist:1:float32",
    "sample:mnist:8:float32",
)
TRAIN_STEPS = 200
NO_GPU = "Error: TensorFlow finds no GPU here; --dry_run checks the script without one."
DEVICES = """
import json, tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
build = tf.sysconfig.get_build_info()
print(json.dumps({
    "tensorflow": tf.__version__,
    "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version"),
    "devices": [d.name for d in tf.config.list_physical_devices()],
    "gpus": [tf.config.experimental.get_device_details(g) for g in gpus],
}))
"""
SCALARS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sys.argv[1], size_guidance={"tensors": 0}).Reload()
print(json.dumps({tag: len(events.Tensors(tag)) for tag in events.Tags()["tensors"]}))
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", help="Folder holding binarized_mnist/ (the original files).")
    parser.add_argument(
        "--output",
        default=os.path.join("runs", "gpu_check"),
        help="Folder for gpu_check.json and the runs (default runs/gpu_check).",
    )
    parser.add_argument("--dry_run", action="store_true", help="Skip the GPU steps.")
    parser.add_argument("--no_install", action="store_true", help="Keep the environment.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per benchmark case.")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not args.dry_run:
        if not args.data_dir:
            parser.error("--data_dir is required (or --dry_run); see docs/performance.md")
        if not os.path.isdir(os.path.join(args.data_dir, "binarized_mnist")):
            parser.error(
                f"no binarized_mnist/ in --data_dir={args.data_dir}; copy it there "
                "(docs/performance.md says how to carry it to a GPU machine)"
            )
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"--output={args.output} is a file; give a folder")
    return args


def run_step(command, timeout=900):
    """Runs ``command`` from the repository root; returns its record and stdout."""
    began = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
    )
    record = {
        "status": "ok" if result.returncode == 0 else "failed",
        "seconds": round(time.perf_counter() - began, 1),
        "command": command,
    }
    if result.returncode:
        record["returncode"] = result.returncode
        record["error_tail"] = (result.stderr or result.stdout)[-3000:]
    return record, result.stdout


def commands(args):
    """{step: command} of every step, in order."""
    python, output = sys.executable, os.path.abspath(args.output)
    data = ["--data_dir", os.path.abspath(args.data_dir)] if args.data_dir else []
    return {
        "install": [python, "-m", "pip", "install", "-q", "-e", ".[test]"],
        "devices": [python, "-c", DEVICES],
        "gpu_tests": [
            python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
            f"--junitxml={os.path.join(output, 'gpu_tests.xml')}",
        ],
        "benchmarks": [
            python, "benchmarks/benchmark.py", *data, f"--repeats={args.repeats}",
            f"--json={os.path.join(output, 'benchmarks.json')}",
            f"--only={','.join(BENCHMARK_CASES)}",
        ],
        "train": [
            python, "train.py", "--dataset=binarized_mnist", *data,
            f"--model_dir={os.path.join(output, 'train')}", f"--num_steps={TRAIN_STEPS}",
            "--checkpoint_every=100", "--validation_every=100", "--log_every=10",
        ],
    }  # fmt: skip


def read_results(step, output, stdout):
    """What a finished step measured."""
    if step == "devices":
        return json.loads(stdout.strip().splitlines()[-1])
    if step == "gpu_tests":
        if not os.path.isfile(os.path.join(output, "gpu_tests.xml")):
            return {}
        suite = ElementTree.parse(os.path.join(output, "gpu_tests.xml")).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    if step == "benchmarks":
        with open(os.path.join(output, "benchmarks.json")) as f:
            return json.load(f)["results"]
    if step == "train":
        rates = re.findall(r"([\d.]+) steps/s", stdout)
        events = os.path.join(output, "train", "train")
        record, counts = run_step([sys.executable, "-c", SCALARS, events])
        return {
            "steps_per_s": float(rates[-1]) if rates else None,
            "scalars_written": json.loads(counts) if record["status"] == "ok" else record,
            "last_lines": stdout.strip().splitlines()[-3:],
        }
    return {}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.output, exist_ok=True)
    report = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": {}}
    path = os.path.join(args.output, "gpu_check.json")
    for step, command in commands(args).items():
        if (step == "install" and (args.dry_run or args.no_install)) or (
            args.dry_run and step in ("gpu_tests", "benchmarks", "train")
        ):
            reason = "--dry_run" if args.dry_run else "--no_install"
            report["steps"][step] = {"status": "skipped", "reason": reason, "command": command}
            continue
        shown = " ".join(command[:2] + ["<script>"] if "-c" in command else command)
        print(f"{step}: {shown}", flush=True)
        record, stdout = run_step(command)
        if record["status"] == "ok" or step == "gpu_tests":  # Failed tests are counted too.
            record["results"] = read_results(step, args.output, stdout)
        report["steps"][step] = record
        print(f"{step}: {record['status']} in {record['seconds']} s", flush=True)
        if step == "devices" and record["status"] == "ok" and not args.dry_run:
            if not record["results"]["gpus"]:
                report["steps"][step]["status"] = "failed"
                _write(report, path)
                print(NO_GPU, file=sys.stderr)
                return 1
        _write(report, path)
    _write(report, path)
    failed = [step for step, record in report["steps"].items() if record["status"] == "failed"]
    print(f"Wrote {path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _write(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
