"""Where the loaders meet: a model from a training folder, from an exported
SavedModel (rebuilt as a Keras model, or seen through its signatures), and
the preset of either, read from its JSON alone.

The layers below never load a model by themselves: training writes run
folders (training.run_folder), serving writes and reads exports, and the
scripts and users come here to get a model back.
"""

import os
from typing import Optional, Sequence

import keras

from vnca_tf.configs import RunConfig, overrides
from vnca_tf.evaluation.reports import EvaluationError
from vnca_tf.models import build_model, storage
from vnca_tf.serving.loaded import LoadedModel
from vnca_tf.training import run_folder


def restore(model_dir: str, which: str = "latest", changes: Sequence[str] = ()):
    """(model, preset, training record) from a run's latest or best checkpoint
    (the newest that reads); ``changes``: model-field overrides
    ("model.field=value", configs.overrides) applied before the model is built,
    of configs.WEIGHT_KEEPING_FIELDS only (storage.read_weights refuses others)."""
    trained = run_folder.read_preset(model_dir)
    preset = with_changes(trained, changes)
    model = build_model(preset.model)
    path = run_folder.read_newest_intact(
        lambda path: storage.read_weights(model, path, trained.model),
        run_folder.checkpoint_paths(model_dir, which),
    )
    return model, preset, run_folder.training_record(model_dir, path)


def restore_saved_model(path: str, changes: Sequence[str] = ()):
    """(model, preset, training record): the Keras model of the SavedModel
    version folder ``path``, rebuilt from its preset and variables (so that an
    older export gains the signatures of this version); ``changes`` as in
    ``restore``."""
    trained, training = storage.read_saved_model_assets(path)
    preset = with_changes(trained, changes)
    model = build_model(preset.model)
    storage.read_weights(model, os.path.join(path, storage.SAVED_MODEL_VARIABLES), trained.model)
    return model, preset, training


def with_changes(preset, changes: Sequence[str]):
    """``preset`` with the model-field overrides ``changes`` ("model.field=value").

    Raises:
      ValueError: a bad override, or one of another section.
    """
    return overrides.apply(preset, RunConfig(), changes, ("model",))[0]


def load_saved_model(path: str):
    """(model, preset): an exported SavedModel seen through its signatures."""
    try:
        model = LoadedModel(path)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from None
    return model, model.preset


def read_preset_of(model_dir: Optional[str] = None, saved_model: Optional[str] = None):
    """The preset of a training folder or an exported version folder, read
    from its JSON alone (fast: for a header before the model loads)."""
    if saved_model:
        try:
            return storage.read_saved_model_assets(saved_model)[0]
        except FileNotFoundError as error:
            raise EvaluationError(str(error)) from None
    return run_folder.read_preset(model_dir)


SHIPPED_MODELS = "saved_models"  # The shipped models' folder, in a checkout.


def load(name_or_path: str, checkpoint: str = "latest"):
    """The Keras model (VNCA or baseline) of a shipped model's name, a
    SavedModel (a version folder or the folder of versions, whose newest is
    taken), a training folder (its ``checkpoint``: "latest" or "best"), or a
    Keras file (model.save("x.keras")). The model's preset is ``model.preset``
    (None for a Keras file: it holds the model's config, not a preset).

        model = vnca_tf.load("mnist_regrow_long_cpu")
        images, means = model.sample(16, seed=0)

    Raises:
      FileNotFoundError: nothing loadable there; the message says where it looked.
    """
    if os.path.isfile(name_or_path):
        if not name_or_path.endswith(".keras"):
            raise FileNotFoundError(
                f"{name_or_path} is a file, but not a Keras file (.keras); pass a .keras "
                "file, a training folder (runs/NAME), an export (exports/NAME or "
                "exports/NAME/1) or a shipped model's name."
            )
        model = keras.saving.load_model(name_or_path)
        model.preset = None
        return model
    path = _find(name_or_path)
    if os.path.isfile(os.path.join(path, run_folder.CONFIG_FILE)):
        model, preset, _ = restore(path, checkpoint)
    else:
        model, preset, _ = restore_saved_model(_newest_version(path))
    model.preset = preset
    return model


def _find(name_or_path: str) -> str:
    """The folder that ``name_or_path`` names: itself, or a shipped model's
    folder in ./saved_models or the checkout's saved_models."""
    if os.path.isdir(name_or_path):
        return name_or_path
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = list(
        dict.fromkeys(
            map(os.path.abspath, [SHIPPED_MODELS, os.path.join(checkout, SHIPPED_MODELS)])
        )
    )
    places = [os.path.join(folder, name_or_path) for folder in folders]
    for place in places:
        if os.path.isdir(place):
            return place
    shipped = sorted(
        {name for folder in folders if os.path.isdir(folder) for name in os.listdir(folder)}
    )
    raise FileNotFoundError(
        f"{name_or_path!r} is not a file or folder here, nor a shipped model (looked in "
        f"{', '.join(places)}). Shipped models: {', '.join(shipped) or 'none found'}; or "
        "pass a training folder (runs/NAME), an export (exports/NAME or exports/NAME/1) "
        "or a Keras file (NAME.keras)."
    )


def _newest_version(path: str) -> str:
    """``path`` if it is a SavedModel, else its highest numbered version folder."""
    if storage.is_saved_model(path):
        return path
    versions = [name for name in os.listdir(path) if name.isdigit()]
    versions = [name for name in versions if storage.is_saved_model(os.path.join(path, name))]
    if not versions:
        raise FileNotFoundError(
            f"{path} holds no model: no config.json (a training folder), no "
            "saved_model.pb (an export version) and no numbered version folder with one."
        )
    return os.path.join(path, max(versions, key=int))
