"""A training run's folder: its layout, config.json, its checkpoints.

    MODEL_DIR/config.json          the resolved preset and how train.py ran
    MODEL_DIR/checkpoints/ckpt-N   the latest checkpoints
    MODEL_DIR/best/ckpt-N          the best one by validation loss
    MODEL_DIR/train, validation    TensorBoard event files
    MODEL_DIR/workers/TASK/...     the checkpoints of non-chief workers

This module is the one place that knows these names and the checkpoint keys
that a loader reads back (the step and the training time).
"""

import dataclasses
import glob
import json
import os
import shutil
from typing import Callable, List, Optional

import tensorflow as tf

from vnca_tf import configs
from vnca_tf.common import cli
from vnca_tf.models import storage

CONFIG_FILE = "config.json"
CHECKPOINT_FOLDERS = {"latest": "checkpoints", "best": "best"}
STEP = "step"  # Checkpoint names of the training step and the training time.
TRAIN_SECONDS = "train_seconds"


class RunFolderError(ValueError):
    """A folder that is not (or not this) training run, and what to do."""


def _value_key(name: str) -> str:
    return f"{name}/.ATTRIBUTES/VARIABLE_VALUE"


def checkpoint_folder(model_dir: str, which: str = "latest", worker: Optional[str] = None) -> str:
    """The folder of the latest or best checkpoints; ``worker`` (e.g.
    "worker_1"): that non-chief worker's own copy."""
    if which not in configs.CHECKPOINTS:
        raise RunFolderError(f"Unknown checkpoint {which!r}; use latest or best.")
    base = model_dir if worker is None else os.path.join(model_dir, "workers", worker)
    return os.path.join(base, CHECKPOINT_FOLDERS[which])


def save_config(
    model_dir: str, preset: configs.Preset, run: Optional[dict] = None, start: Optional[dict] = None
) -> str:
    """Writes config.json: the resolved preset, train.py's ``run`` settings
    (both as the run started: a start that finds no checkpoint is a new run)
    and its history of starts, ``start`` the newest (record_start appends a
    resume's, and never rewrites the settings). The
    file is replaced in one rename: a reader on a shared disk sees the old file
    or the new, never half of one."""
    os.makedirs(model_dir, exist_ok=True)
    earlier = []  # Starts that wrote no checkpoint, kept in the history.
    if os.path.isfile(os.path.join(model_dir, CONFIG_FILE)):
        earlier = read_config(model_dir).get("starts", [])
    starts = earlier + ([start] if start else [])
    return _write_config(
        model_dir, {**configs.preset_to_dict(preset), "run": run or {}, "starts": starts}
    )


def record_start(model_dir: str, start: dict) -> str:
    """Appends ``start`` (command, step, time, accepted changes) to the history
    of a run's config.json, whose settings stay as the run started."""
    record = read_config(model_dir)
    first = {"command": record.get("run", {}).get("command"), "step": 0}  # Before "starts".
    record["starts"] = [*record.get("starts", [first]), start]
    return _write_config(model_dir, record)


def _write_config(model_dir: str, record: dict) -> str:
    path = os.path.join(model_dir, CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2, default=str)
    os.replace(path + ".tmp", path)
    return path


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunFolderError(
            f"{model_dir} is not a training folder: it has no {CONFIG_FILE}. Pass the "
            "--model_dir that train.py wrote to."
        )
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise RunFolderError(
                f"{path} is not valid JSON ({error}): it was cut short or edited. Restore "
                "it from a copy, or pick a new --model_dir."
            ) from None


def read_preset(model_dir: str) -> configs.Preset:
    """The preset a run was trained with."""
    return configs.preset_from_dict(read_config(model_dir))


# What a resume may change: settings that decide when the run reports,
# validates and saves, how long it runs, and how it executes (the strategy and
# replicas over the same global batch, XLA, recomputation, microbatches: the
# same updates to float rounding, except a pool run's replica count:
# check_replicas; the data's folder, not the data; each start records its
# strategy and replica count in the history). Every
# other field of the model, training or run (batch size, seed, schedule,
# data, precision, ...) would make the rest of the run another run.
RESUME_ACCEPTS = {
    "train": (
        "num_steps",
        "init_from",  # A resume reads its own checkpoint, never init_from again.
        "log_every",
        "log_minutes",
        "validation_every",
        "validation_batches",
        "image_every",
        "checkpoint_every",
        "checkpoint_minutes",
        "keep_checkpoints",
        "max_nonfinite",
    ),
    "run": (
        "jit_compile",
        "recompute",
        "microbatches",
        "data_dir",
        "deterministic",
        "worker_timeout",
        "console_seconds",
    ),
}


def check_resumable(
    model_dir: str, preset: configs.Preset, run: Optional[configs.RunConfig] = None
) -> List[str]:
    """The changes ("train.num_steps: 20 -> 40") that this start makes to the
    run in ``model_dir``, all of RESUME_ACCEPTS ([] for a new folder, or one
    with no checkpoint yet: a fresh start).

    Raises:
      RunFolderError: ``model_dir`` is a file; it holds a run of another
        model or dataset; or this start changes a setting a resume must keep.
    """
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise RunFolderError(
            f"--model_dir {model_dir} is a file, not a folder; pass a "
            "folder (new or of this run) for the run's checkpoints."
        )
    if not os.path.isfile(os.path.join(model_dir, CONFIG_FILE)):
        return []
    record = read_config(model_dir)
    saved = configs.preset_from_dict(record)
    another = configs.weight_changing_fields(saved.model, preset.model)
    if another or saved.dataset != preset.dataset:
        raise RunFolderError(
            f"{model_dir} holds a run of another model ({saved.name} on {saved.dataset}"
            + (f"; changed {', '.join(another)}" if another else "")
            + f"); pick a new --model_dir to train {preset.name}."
        )
    if not _has_checkpoint(model_dir):
        return []
    changes = _differences(
        [
            ("model", saved.model, preset.model),
            ("train", saved.train, preset.train),
            ("run", _saved_run_config(record.get("run", {}), run), run),
        ]
    )
    refused = [change for change in changes if change[0] not in RESUME_ACCEPTS.get(change[1], ())]
    if refused:
        field, section, old, new = refused[0]
        raise RunFolderError(
            f"{model_dir} holds a run with {section}.{field}={old!r}; this start asks for "
            f"{new!r}, which would make the rest of it another run"
            + (f" (and {len(refused) - 1} more changes)" if len(refused) > 1 else "")
            + f". Resume with the run's settings, or start a new run from its weights: "
            f"--init_from={model_dir} --model_dir=NEW_FOLDER."
        )
    return [f"{section}.{field}: {old!r} -> {new!r}" for field, section, old, new in changes]


def check_replicas(model_dir: str, preset: configs.Preset, replicas: int) -> None:
    """Refuses to resume a pool run on another number of replicas than its
    last start's: each replica pools half of its own share of the batch and
    damages with its own seed, so the count changes what the run computes."""
    starts = read_config(model_dir).get("starts", []) if _has_checkpoint(model_dir) else []
    before = starts[-1].get("replicas") if starts else None
    if preset.train.pool_size and before is not None and before != replicas:
        raise RunFolderError(
            f"{model_dir} holds a pool run trained on {before} replica(s); this start has "
            f"{replicas}. Each replica pools and damages its own share of the batch, so "
            f"the rest would be another run: resume on {before} replica(s), or start a new "
            f"run from its weights: --init_from={model_dir} --model_dir=NEW_FOLDER."
        )


def _has_checkpoint(model_dir: str) -> bool:
    return tf.train.get_checkpoint_state(checkpoint_folder(model_dir)) is not None


def _saved_run_config(run: dict, new: Optional[configs.RunConfig]):
    """The RunConfig a run started with, as far as config.json says: a field
    that a config.json of an earlier version lacks is taken from ``new`` (not
    compared), and so is the strategy (config.json records the one a start
    resolved, "default", "mirrored", ...; each start's own is in its history)."""
    if new is None:
        return None
    names = {field.name for field in dataclasses.fields(configs.RunConfig)} - {"strategy"}
    return dataclasses.replace(new, **{name: run[name] for name in names if name in run})


def _differences(sections) -> list:
    """(field, section, old, new) of each field whose value differs between
    the old and new config of each (section, old, new); a section whose old
    or new is None is not compared."""
    return [
        (field.name, section, getattr(old, field.name), getattr(new, field.name))
        for section, old, new in sections
        if old is not None and new is not None
        for field in dataclasses.fields(old)
        if getattr(old, field.name) != getattr(new, field.name)
    ]


def remove_temporary_checkpoints(folder: str) -> None:
    """Removes what an interrupted save left in a checkpoint folder (the
    ``ckpt-N_temp`` folders TensorFlow writes before renaming)."""
    for path in glob.glob(os.path.join(glob.escape(folder), "*_temp*")):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def checkpoint_paths(model_dir: str, which: str = "latest") -> List[str]:
    """The paths of a run's latest or best checkpoints, oldest first."""
    folder = checkpoint_folder(model_dir, which)
    state = tf.train.get_checkpoint_state(folder)
    if state is None or not state.all_model_checkpoint_paths:
        validation = read_config(model_dir).get("run", {}).get("validation", "")
        if which == "best" and validation.startswith("none"):
            raise RunFolderError(
                f"{model_dir} has no best checkpoint: it has no validation ({validation}). "
                "Use --checkpoint=latest."
            )
        raise RunFolderError(
            f"No {which} checkpoint in {folder}: train first (python train.py "
            f"--model_dir={model_dir} ...), or pick another folder."
        )
    return [
        os.path.join(folder, os.path.basename(path)) for path in state.all_model_checkpoint_paths
    ]


# What reading a truncated or corrupt checkpoint raises.
_CORRUPT = (tf.errors.OpError, IndexError)


def read_newest_intact(read: Callable[[str], object], paths: List[str]) -> str:
    """Calls ``read`` on the newest of ``paths`` (oldest first) that reads,
    warning about each newer one that does not; returns that path."""
    for path in reversed(paths):
        try:
            read(path)
            return path
        except _CORRUPT as error:
            cli.warn(
                f"skipped the checkpoint {path}: it does not read ({error}); "
                "trying the one before it."
            )
    raise RunFolderError(
        f"None of the checkpoints {', '.join(paths)} reads: they are "
        "truncated or corrupt. Start afresh in a new --model_dir."
    )


def training_record(model_dir: str, path: str) -> dict:
    """How the checkpoint at ``path`` was trained: its path, steps, wall-clock seconds
    (None for checkpoints that predate the count), and train.py's run settings
    from config.json: the run's command and precision, and the strategy and
    replicas of its newest start."""
    reader = tf.train.load_checkpoint(path)
    run = read_config(model_dir).get("run", {})
    seconds = _value_key(TRAIN_SECONDS)
    record = {
        "checkpoint": path,
        "steps": int(reader.get_tensor(_value_key(STEP))),
        "wall_time_s": (float(reader.get_tensor(seconds)) if reader.has_tensor(seconds) else None),
    }
    newest = (read_config(model_dir).get("starts") or [{}])[-1]  # A resume may change these.
    record.update({key: run[key] for key in ("command", "precision") if key in run})
    record.update(
        {key: newest.get(key, run.get(key)) for key in ("strategy", "replicas") if key in run}
    )
    return record


def read_initial_weights(model, source: str) -> str:
    """Reads the weights of ``model`` from ``source`` (a SavedModel version
    folder, or a training folder's latest checkpoint) to fine-tune from;
    returns the path read. Raises RunFolderError if ``source`` is neither, and
    storage.WeightsMismatchError if it holds another model (one that differs
    outside configs.WEIGHT_KEEPING_FIELDS, or whose variables do not match)."""
    if storage.is_saved_model(source):
        trained = storage.read_saved_model_assets(source)[0].model
        paths = [os.path.join(source, storage.SAVED_MODEL_VARIABLES)]
    elif os.path.isfile(os.path.join(source, CONFIG_FILE)):
        trained = read_preset(source).model
        paths = checkpoint_paths(source)
    else:
        raise RunFolderError(
            f"init_from={source!r} is neither a SavedModel version folder (with "
            "saved_model.pb, e.g. saved_models/mnist_heal_cpu/1) nor a training folder "
            f"(with {CONFIG_FILE}); pass one of those."
        )
    return read_newest_intact(lambda path: storage.read_weights(model, path, trained), paths)
