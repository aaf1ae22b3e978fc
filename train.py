"""Trains a VNCA: python train.py --dataset=celeb_a [--model_dir=runs/celeb_a] [...]

--dataset picks the preset behind the paper's number for that dataset (with
--model=damage the non-doubling model, --model=baseline the convolutional VAE),
--preset any preset (python train.py --list_presets lists them; FILE.py:NAME
one of your own). Runs on whatever the machine has:
several GPUs (MirroredStrategy), several hosts (MultiWorkerMirroredStrategy,
from TF_CONFIG), or one device. Starting again with the same --model_dir
resumes from its latest checkpoint. Watch it with: tensorboard --logdir=MODEL_DIR

Any config field can be set on top of the preset:
--config.model.update_probability=0.5, --config.train.clip_norm=1,
--config.run.precision=mixed_bfloat16 (the short flags above are the same).
"""

import dataclasses
import datetime
import os
import shlex
import sys

from absl import app, flags, logging

from vnca_tf import configs
from vnca_tf.common import cli, stopping
from vnca_tf.configs import overrides

flags.DEFINE_string(
    "dataset",
    None,
    "binarized_mnist (or mnist), celeb_a or noto_emoji: trains the paper's preset for it.",
)
flags.DEFINE_enum(
    "model",
    "vnca",
    list(configs.MODEL_KINDS),
    "With --dataset: the "
    "doubling VNCA, the non-doubling VNCA trained to regrow after damage, or "
    "the paper's deep convolutional VAE baseline for that dataset.",
)
flags.DEFINE_string(
    "preset",
    None,
    "Any preset name (see --list_presets), or FILE.py:NAME for a Preset NAME defined in that file.",
)
flags.DEFINE_bool("list_presets", False, "List the presets and exit.")
flags.DEFINE_string(
    "model_dir", None, "Checkpoints, TensorBoard logs and config.json (default: runs/<preset>)."
)
flags.DEFINE_string(
    "data_dir", None, "Folder of the original dataset files (default: $VNCA_DATA_DIR)."
)
flags.DEFINE_enum(
    "data_source",
    "auto",
    list(configs.DATA_SOURCES),
    "Where the data come from: local files, tensorflow-datasets, or auto.",
)
flags.DEFINE_enum(
    "strategy",
    "auto",
    list(configs.STRATEGIES),
    "tf.distribute strategy; auto picks it from TF_CONFIG and the GPUs.",
)
flags.DEFINE_enum(
    "jit_compile",
    "auto",
    list(configs.JIT_COMPILE),
    "Compile the forward and backward pass with XLA; auto: on GPUs only (on CPUs it is slower).",
)
flags.DEFINE_enum(
    "precision",
    "float32",
    list(configs.PRECISIONS),
    "mixed_bfloat16 computes the networks in bfloat16 (GPUs, and CPUs with "
    "bfloat16 units), mixed_float16 in float16 with dynamic loss scaling "
    "(older GPUs); likelihood, KL and loss stay float32.",
)
flags.DEFINE_bool(
    "recompute",
    False,
    "Recompute each NCA step in backprop instead of "
    "storing its activations: less memory, about 40% more time.",
)
flags.DEFINE_integer(
    "microbatches",
    1,
    "Split each replica's batch into this many parts "
    "and sum their gradients: the same update in less memory.",
)
flags.DEFINE_bool("deterministic", False, "Enable TensorFlow op determinism.")
flags.DEFINE_float(
    "worker_timeout",
    configs.RunConfig.worker_timeout,
    "Multi-worker runs: seconds to wait for every "
    "worker of TF_CONFIG's cluster to join before giving up.",
    lower_bound=1.0,
)
flags.DEFINE_float(
    "console_seconds",
    configs.RunConfig.console_seconds,
    "Seconds between progress lines when the console is a log file "
    "(a terminal's line is redrawn after every step).",
)
_TRAIN_FLAGS = {
    "num_steps": (flags.DEFINE_integer, "Number of training steps."),
    "batch_size": (flags.DEFINE_integer, "Global batch size (over all replicas)."),
    "learning_rate": (flags.DEFINE_float, "Adam learning rate."),
    "learning_rate_drops": (
        flags.DEFINE_list,
        "Steps after which the learning rate falls tenfold, comma-separated (none: '').",
    ),
    "beta": (flags.DEFINE_float, "Weight of the KL term."),
    "seed": (flags.DEFINE_integer, "Seed of every random number of the run."),
    "log_every": (flags.DEFINE_integer, "Steps between scalar summaries."),
    "validation_every": (flags.DEFINE_integer, "Steps between validation losses."),
    "image_every": (flags.DEFINE_integer, "Steps between image summaries."),
    "checkpoint_every": (flags.DEFINE_integer, "Steps between checkpoints."),
    "checkpoint_minutes": (
        flags.DEFINE_float,
        "Minutes of training after which a checkpoint is also written.",
    ),
    "log_minutes": (flags.DEFINE_float, "Minutes after which scalars are also written."),
    "max_nonfinite": (flags.DEFINE_integer, "Non-finite updates in a row that stop the run."),
    "pool_damaged": (
        flags.DEFINE_float,
        "Fraction of the pooled half of each batch that is damaged (pool training).",
    ),
    "init_from": (
        flags.DEFINE_string,
        "Start from these weights (a SavedModel version "
        "folder or a training folder) instead of a random init: a fine-tune.",
    ),
}
for _name, (_define, _help) in _TRAIN_FLAGS.items():
    _define(_name, None, _help + " Default: the preset's.")
FLAGS = flags.FLAGS


def resolve_preset() -> configs.Preset:
    """The preset named by the flags, with the flags' training overrides.

    Raises:
      ValueError: no or two presets named, an unknown one, or bad overrides.
    """
    if bool(FLAGS.dataset) == bool(FLAGS.preset):
        raise ValueError(
            "Give exactly one of --dataset (the paper's preset for it) and "
            "--preset (any preset; python train.py --list_presets)."
        )
    if FLAGS.dataset:
        preset = configs.preset_for(FLAGS.dataset, FLAGS.model)
    else:
        preset = configs.get_preset(FLAGS.preset)
    overrides = {name: FLAGS[name].value for name in _TRAIN_FLAGS if FLAGS[name].value is not None}
    if "learning_rate_drops" in overrides:
        drops = overrides["learning_rate_drops"]
        if not all(step.isdigit() for step in drops):
            raise ValueError(
                f"--learning_rate_drops takes step numbers, e.g. 3000,6000; got {','.join(drops)}."
            )
        overrides["learning_rate_drops"] = tuple(int(step) for step in drops)
    return dataclasses.replace(preset, train=dataclasses.replace(preset.train, **overrides))


def run_config() -> configs.RunConfig:
    """How the run executes, from the flags (validated as the configs are)."""
    return configs.RunConfig(
        strategy=FLAGS.strategy,
        precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        recompute=FLAGS.recompute,
        microbatches=FLAGS.microbatches,
        data_source=FLAGS.data_source,
        data_dir=FLAGS.data_dir,
        deterministic=FLAGS.deterministic,
        worker_timeout=FLAGS.worker_timeout,
        console_seconds=FLAGS.console_seconds,
    )


def summary(
    preset: configs.Preset, run: configs.RunConfig, model_dir: str, strategy: str, replicas: int
) -> str:
    """The run in a few lines (the full configuration is in config.json)."""
    model, train = preset.model, preset.train
    return "\n".join(
        [
            f"Training {preset.name} on {preset.dataset}"
            + (f" (overrides: {overrides.describe(overrides.GIVEN)})" if overrides.GIVEN else "")
            + f": {configs.kind_of(model).describe()}, "
            f"z = {model.latent_size}, "
            f"{model.image_shape[0]}x{model.image_shape[1]}x{model.image_shape[2]} images",
            f"  {train.num_steps:,} steps of batch {train.batch_size}, learning rate "
            f"{train.learning_rate:g}"
            + "".join(f" (/10 after step {step:,})" for step in train.learning_rate_drops)
            + f", beta {train.beta:g}, clip {train.clip_norm:g}"
            + (f", pool {train.pool_size}, damage {train.damage_size}" if train.pool_size else "")
            + (f", from {train.init_from}" if train.init_from else ""),
            f"  {strategy} strategy, {replicas} replica(s), {run.precision}; "
            f"checkpoints every {train.checkpoint_every:,} steps or "
            f"{train.checkpoint_minutes:g} minutes",
            f"  in {model_dir} (config.json: the full configuration; tensorboard "
            f"--logdir={model_dir})",
        ]
    )


def _record_start(run_folder, faults, model_dir, preset, run, trainer, strategy, changes):
    """config.json: the settings and the first start of a new run; a resume's
    start (its command, step, time and the changes it made) appended."""
    from vnca_tf.training import distribution

    start = {
        "command": shlex.join(["python", "train.py", *sys.argv[1:]]),
        "step": int(trainer.state.step.numpy()),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "strategy": distribution.strategy_name(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "changes": changes,
    }
    with faults.doing(f"Writing {model_dir}/config.json"):
        if trainer.state.resumed_from:
            if changes:
                print(f"  resumed with: {'; '.join(changes)} (recorded in config.json)", flush=True)
            run_folder.record_start(model_dir, start)
            return
        run_folder.save_config(
            model_dir,
            preset,
            {
                **dataclasses.asdict(run),
                "command": start["command"],
                "overrides": list(overrides.GIVEN),
                "model_dir": model_dir,
                "strategy": start["strategy"],
                "replicas": start["replicas"],
                "validation": trainer.inputs.describe_validation(),
            },
            start,
        )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.list_presets:
        for preset in configs.PRESETS.values():
            print(f"{preset.name:<20} {preset.dataset:<16} {preset.description}")
        return 0
    stopper = stopping.Stopper().install()  # Before TensorFlow starts its threads.
    try:
        preset, run = overrides.apply(resolve_preset(), run_config(), overrides.GIVEN)
    except ValueError as error:
        return cli.error(str(error))
    model_dir = FLAGS.model_dir or os.path.join("runs", preset.name)

    tf = cli.start_tensorflow()  # After flag parsing: --help stays fast.
    from vnca_tf.common import faults, run_lock
    from vnca_tf.data import DataError
    from vnca_tf.models.storage import WeightsMismatchError
    from vnca_tf.training import distribution, loop, run_folder

    try:
        changes = run_folder.check_resumable(model_dir, preset, run)
        if run.deterministic:
            tf.config.experimental.enable_op_determinism()
        strategy = distribution.choose_strategy(run.strategy, run.worker_timeout)
        run_folder.check_replicas(model_dir, preset, strategy.num_replicas_in_sync)
        stopper.listen()  # After a cluster's wait, which common.cluster_watch minds.
        trainer = loop.Trainer(preset, model_dir, strategy, run)
    except ValueError as error:  # Flags that do not fit together, the machine or the folder.
        return cli.error(str(error))
    lock = run_lock.RunLock(model_dir) if trainer.chief else None
    try:
        if lock is not None:  # One live run per folder: the chief holds it.
            with faults.doing(f"Taking the run's folder {model_dir}"):
                taken_over = lock.acquire()
            stopper.on_quit(lambda: lock.release(remove_empty_folder=True))
            if taken_over:
                cli.warn(taken_over)
        if trainer.chief:
            print(
                summary(
                    preset,
                    run,
                    model_dir,
                    distribution.strategy_name(strategy),
                    strategy.num_replicas_in_sync,
                ),
                flush=True,
            )
        start = trainer.restore()
        if start >= preset.train.num_steps:
            print(
                f"{model_dir} is already at step {start:,} of --num_steps="
                f"{preset.train.num_steps:,}: nothing to do (config.json unchanged)."
            )
            return 0
        trainer.prepare()  # The data before anything is written: a failed start makes no folder.
        if trainer.chief:
            _record_start(run_folder, faults, model_dir, preset, run, trainer, strategy, changes)
        metrics = trainer.train(stop=stopper)
    except (
        DataError,
        run_folder.RunFolderError,
        run_lock.LockedError,
        WeightsMismatchError,
    ) as error:
        return cli.error(str(error))
    except faults.FaultError as fault:
        last = trainer.last_checkpoint()
        return cli.error(
            f"{fault} "
            + (
                f"The last intact checkpoint is {last}; once that is fixed, run the same "
                "command to resume from it."
                if last
                else "No checkpoint had been written yet."
            )
        )
    except distribution.LOST_PEER_ERRORS as error:
        lost = distribution.lost_peer(error, strategy)
        if lost is None:
            raise
        last = trainer.last_checkpoint()
        whose = "The newest intact checkpoint" if trainer.chief else "This worker's newest copy"
        return cli.error(
            f"Lost {lost}, at step {trainer.current_step:,}. "
            + (
                f"{whose} is {last}; start every worker again with the "
                "same command to resume from it."
                if last
                else "No checkpoint had been written yet; start every worker again with "
                "the same command."
            )
        )
    except loop.NonFiniteError as error:
        print(f"\nStopped: {error}", file=sys.stderr)
        return 3
    except loop.Stopped as stopped:
        print(
            f"Stopped by {stopper.signal_name} after step {stopped.step:,}: checkpoint "
            f"{stopped.checkpoint}. Run the same command to resume.",
            file=sys.stderr,
        )
        return stopper.exit_code
    finally:
        if lock is not None:
            lock.release(remove_empty_folder=True)
    print(
        f"Done: step {int(trainer.state.step.numpy())}, loss "
        f"{metrics.get('loss', float('nan')):.4f}; checkpoints in "
        f"{trainer.state.managers['latest'].directory}."
    )
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=overrides.parse_flags)
