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
# ModelConfig fields a fine-tune (init_from) may change: the non-doubling step
# range sets how long the NCA runs, not the shapes of its weights.
RETUNABLE_FIELDS = ("min_steps", "max_steps")
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


def save_config(model_dir: str, preset: configs.Preset, run: Optional[dict] = None) -> str:
    """Writes the resolved preset (and train.py's ``run`` settings) as config.json."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, CONFIG_FILE)
    with open(path, "w") as f:
        json.dump({**configs.preset_to_dict(preset), "run": run or {}}, f, indent=2, default=str)
    return path


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunFolderError(
            f"{model_dir} is not a training folder: it has no {CONFIG_FILE}. Pass the "
            "--model_dir that train.py wrote to."
        )
    with open(path) as f:
        return json.load(f)


def read_preset(model_dir: str) -> configs.Preset:
    """The preset a run was trained with."""
    return configs.preset_from_dict(read_config(model_dir))


def check_resumable(model_dir: str, preset: configs.Preset) -> None:
    """Refuses a model_dir that is not a folder, or holds a run of another
    model than ``preset``'s."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise RunFolderError(
            f"--model_dir {model_dir} is a file, not a folder; pass a "
            "folder (new or of this run) for the run's checkpoints."
        )
    if not os.path.isfile(os.path.join(model_dir, CONFIG_FILE)):
        return
    saved = read_preset(model_dir)
    if saved.model != preset.model or saved.dataset != preset.dataset:
        raise RunFolderError(
            f"{model_dir} holds a run of another model ({saved.name} on "
            f"{saved.dataset}); pick a new --model_dir to train {preset.name}."
        )


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
    (command, precision, strategy, replicas) from config.json."""
    reader = tf.train.load_checkpoint(path)
    run = read_config(model_dir).get("run", {})
    seconds = _value_key(TRAIN_SECONDS)
    record = {
        "checkpoint": path,
        "steps": int(reader.get_tensor(_value_key(STEP))),
        "wall_time_s": (float(reader.get_tensor(seconds)) if reader.has_tensor(seconds) else None),
    }
    record.update(
        {key: run[key] for key in ("command", "precision", "strategy", "replicas") if key in run}
    )
    return record


def read_initial_weights(model, source: str) -> str:
    """Reads the weights of ``model`` from ``source`` (a SavedModel version
    folder, or a training folder's latest checkpoint) to fine-tune from;
    returns the path read. Raises RunFolderError if ``source`` is neither or
    holds another model (one that differs in more than RETUNABLE_FIELDS)."""
    if storage.is_saved_model(source):
        source_model = storage.read_saved_model_assets(source)[0].model
        paths = [os.path.join(source, storage.SAVED_MODEL_VARIABLES)]
    elif os.path.isfile(os.path.join(source, CONFIG_FILE)):
        source_model = read_preset(source).model
        paths = checkpoint_paths(source)
    else:
        raise RunFolderError(
            f"init_from={source!r} is neither a SavedModel version folder (with "
            "saved_model.pb, e.g. saved_models/mnist_heal_cpu/1) nor a training folder "
            f"(with {CONFIG_FILE}); pass one of those."
        )
    differences = [
        f"{field.name} {getattr(source_model, field.name)} there, "
        f"{getattr(model.config, field.name)} here"
        for field in dataclasses.fields(source_model)
        if field.name not in RETUNABLE_FIELDS
        and getattr(source_model, field.name) != getattr(model.config, field.name)
    ]
    if differences:
        raise RunFolderError(
            f"The weights in {source} are of another model than this "
            f"preset's: {'; '.join(differences)}."
        )
    return read_newest_intact(lambda path: storage.read_weights(model, path), paths)
