"""Where the loaders meet: a model from a training folder, from an exported
SavedModel (rebuilt as a Keras model, or seen through its signatures), and
the preset of either, read from its JSON alone.

The layers below never load a model by themselves: training writes run
folders (training.run_folder), serving writes and reads exports, and the
scripts and users come here to get a model back.
"""

import os
from typing import Optional

from vnca_tf.evaluation.reports import EvaluationError
from vnca_tf.models import build_model, storage
from vnca_tf.serving.loaded import LoadedModel
from vnca_tf.training import run_folder


def restore(model_dir: str, which: str = "latest"):
    """(model, preset, training record) from a run's latest or best checkpoint
    (the newest that reads)."""
    preset = run_folder.read_preset(model_dir)
    model = build_model(preset.model)
    path = run_folder.read_newest_intact(
        lambda path: storage.read_weights(model, path),
        run_folder.checkpoint_paths(model_dir, which),
    )
    return model, preset, run_folder.training_record(model_dir, path)


def restore_saved_model(path: str):
    """(model, preset, training record): the Keras model of the SavedModel
    version folder ``path``, rebuilt from its preset and variables (so that an
    older export gains the signatures of this version)."""
    preset, training = storage.read_saved_model_assets(path)
    model = build_model(preset.model)
    storage.read_weights(model, os.path.join(path, storage.SAVED_MODEL_VARIABLES))
    return model, preset, training


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
