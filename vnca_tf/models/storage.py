"""Where a model's weights and preset are stored, and reading them back.

A training checkpoint holds the model under the key "model"; an exported
SavedModel holds it the same way in its variables, with its preset and how it
was trained as JSON in assets.extra/. Training (its checkpoints, a fine-tune's
init_from), export and the loaders all read and write through here.
"""

import json
import os

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from vnca_tf.configs import (
    WEIGHT_KEEPING_FIELDS,
    preset_from_dict,
    preset_to_dict,
    weight_changing_fields,
)

SAVED_MODEL_CONFIG = os.path.join("assets.extra", "vnca_config.json")
TRAINING_ASSET = os.path.join("assets.extra", "vnca_training.json")
SAVED_MODEL_VARIABLES = os.path.join("variables", "variables")


class WeightsMismatchError(ValueError):
    """Weights that do not fit a model one to one, and which."""


def read_weights(model, path: str, trained=None) -> None:
    """Reads every weight of ``model`` from the checkpoint ``path`` (a training
    checkpoint, or a SavedModel's variables/variables), all or nothing.

    ``trained``: the ModelConfig the weights were trained with; the model may
    differ from it only in configs.WEIGHT_KEEPING_FIELDS.

    Raises:
      WeightsMismatchError (before anything is read): a field outside those
        differs, a variable of the model is not in the checkpoint, one of the
        checkpoint's model variables has no place in the model, or a shape
        differs; one line names the fields and the variables.
    """
    fields = weight_changing_fields(trained, model.config) if trained is not None else ()
    mismatches = mismatched_variables(model, path)
    if fields or mismatches:
        raise WeightsMismatchError(
            f"The weights in {path} do not fit this model"
            + (f": changed {', '.join(fields)}" if fields else "")
            + (f"; {'; '.join(mismatches)}" if mismatches else "")
            + ". A trained model takes changes only to "
            + ", ".join(WEIGHT_KEEPING_FIELDS)
            + "; train another model for the others."
        )
    tf.train.Checkpoint(model=model).read(path).expect_partial().assert_existing_objects_matched()


def mismatched_variables(model, path: str) -> list:
    """What keeps the checkpoint ``path`` and ``model`` from matching one to one:
    the model's variables it lacks, its model variables the model has no place
    for, and the variables whose shapes differ (each a phrase naming them)."""
    view = tf.train.CheckpointView(path)
    matched = view.match(tf.train.Checkpoint(model=model))
    reader = tf.train.load_checkpoint(path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )
    shapes = reader.get_variable_to_shape_map()
    under_model, todo = set(), [view.children(0)["model"]] if "model" in view.children(0) else []
    while todo:
        node = todo.pop()
        if node not in under_model:
            under_model.add(node)
            todo.extend(view.children(node).values())
    read = {id(value) for value in matched.values()}
    unused = [
        _variable_name(attribute.checkpoint_key)
        for node in sorted(under_model - set(matched))
        for attribute in graph.nodes[node].attributes
    ]
    missing = [variable.path for variable in model.variables if id(variable) not in read]
    reshaped = [
        f"{_variable_name(attribute.checkpoint_key)} "
        f"{tuple(shapes[attribute.checkpoint_key])} there, {tuple(value.shape)} here"
        for node, value in sorted(matched.items())
        if node in under_model
        for attribute in graph.nodes[node].attributes
        if attribute.checkpoint_key in shapes
        and tuple(shapes[attribute.checkpoint_key]) != tuple(value.shape)
    ]
    return [
        f"{description}: {_some(names)}"
        for description, names in (
            (f"{len(unused)} of its variables have no place in the model", unused),
            (f"{len(missing)} of the model's variables are not in it", missing),
            (f"{len(reshaped)} variables differ in shape", reshaped),
        )
        if names
    ]


def _variable_name(checkpoint_key: str) -> str:
    return checkpoint_key.replace("/.ATTRIBUTES/VARIABLE_VALUE", "")


def _some(names: list, shown: int = 4) -> str:
    """The first ``shown`` of ``names``, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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
