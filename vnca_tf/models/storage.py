"""Where a model's weights and preset are stored, and reading them back.

A training checkpoint holds the model under the key "model"; an exported
SavedModel holds it the same way in its variables, with its preset and how it
was trained as JSON in assets.extra/. Training (its checkpoints, a fine-tune's
init_from), export and the loaders all read and write through here.
"""

import json
import os

import tensorflow as tf

from vnca_tf.configs import preset_from_dict, preset_to_dict

SAVED_MODEL_CONFIG = os.path.join("assets.extra", "vnca_config.json")
TRAINING_ASSET = os.path.join("assets.extra", "vnca_training.json")
SAVED_MODEL_VARIABLES = os.path.join("variables", "variables")


def read_weights(model, path: str) -> None:
    """Reads the weights of ``model`` from the checkpoint ``path`` (a training
    checkpoint, or a SavedModel's variables/variables)."""
    tf.train.Checkpoint(model=model).read(path).expect_partial().assert_existing_objects_matched()


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def write_saved_model_assets(path: str, preset, training: dict) -> None:
    """Stores ``preset`` and the ``training`` record beside a SavedModel."""
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    for asset, record in (
        (SAVED_MODEL_CONFIG, preset_to_dict(preset)),
        (TRAINING_ASSET, training or {}),
    ):
        with open(os.path.join(path, asset), "w") as f:
            json.dump(record, f, indent=2)


def read_saved_model_assets(path: str):
    """(preset, training record) of the SavedModel version folder ``path``.

    Raises:
      FileNotFoundError: not a SavedModel folder, or not one vnca_tf exported.
    """
    config_path = os.path.join(path, SAVED_MODEL_CONFIG)
    if not is_saved_model(path):
        raise FileNotFoundError(
            f"{path} is not a SavedModel folder (no saved_model.pb); pass the "
            "version folder, e.g. exports/mnist/1."
        )
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{path} has no {SAVED_MODEL_CONFIG}: it was not exported by vnca_tf."
        )
    with open(config_path) as f:
        preset = preset_from_dict(json.load(f))
    training = {}
    if os.path.isfile(os.path.join(path, TRAINING_ASSET)):
        with open(os.path.join(path, TRAINING_ASSET)) as f:
            training = json.load(f)
    return preset, training
