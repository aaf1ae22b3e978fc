"""TensorFlow.js models of the browser demo, converted from a SavedModel.

``convert("saved_models/mnist_heal_cpu/1", "web/models/mnist_heal_cpu")`` runs
the official converter (tensorflowjs_converter) on each ``browser_NAME``
signature of the SavedModel (serving.browser_graphs) and writes
``FOLDER/NAME/model.json`` (+ weights) and ``FOLDER/vnca.json``: the preset,
the graphs, the growth schedule the page runs (the model's kind's), how the
model was trained and what it measured. The converter
pins another TensorFlow than this project, so it runs from its own
environment, made by ``web/make_converter_env.sh``.
"""

import json
import os
import subprocess

from vnca_tf.configs import kind_of, preset_to_dict
from vnca_tf.models import storage
from vnca_tf.serving.browser_graphs import SIGNATURE_PREFIX
from vnca_tf.serving.demo_server import MANIFEST

CONVERTER = os.path.join(".venv-tfjs", "bin", "tensorflowjs_converter")
# What the page shows of a model's results.json (evaluate.py).
RESULT_KEYS = (
    "log_likelihood_nats",
    "stderr_nats",
    "bits_per_dim",
    "num_examples",
    "num_samples",
    "healing",
)


def convert(saved_model: str, folder: str, converter: str = CONVERTER, results: dict = None) -> str:
    """Converts the browser graphs of the SavedModel version folder
    ``saved_model`` into ``folder``; ``results``: its evaluate.py report, if
    any. Returns the manifest's path."""
    preset, training = storage.read_saved_model_assets(saved_model)
    names = kind_of(preset.model).browser_graphs
    if not names:
        raise ValueError(
            f"{preset.name} has no browser graphs: the demo runs VNCAs of "
            "binary images (a *_cpu, mnist or mnist_damage preset)."
        )
    if not os.path.isfile(converter):
        raise FileNotFoundError(
            f"No TensorFlow.js converter at {converter}; make its environment with "
            "web/make_converter_env.sh (or pass --tfjs_converter)."
        )
    for name in names:
        done = subprocess.run(
            [
                converter,
                "--input_format=tf_saved_model",
                "--saved_model_tags=serve",
                f"--signature_name={SIGNATURE_PREFIX}{name}",
                saved_model,
                os.path.join(folder, name),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(
                f"tensorflowjs_converter failed on the {name} graph of "
                f"{saved_model}:\n{done.stderr[-2000:]}"
            )
    return write_manifest(folder, preset, training, results)


def write_manifest(folder: str, preset, training: dict, results: dict = None) -> str:
    """Writes FOLDER/vnca.json, what the page reads of a converted model: its
    preset, what it does in plain words, graphs, growth schedule, training
    record and results."""
    kind = kind_of(preset.model)
    shown = {key: value for key, value in (results or {}).items() if key in RESULT_KEYS}
    path = os.path.join(folder, MANIFEST)
    with open(path, "w") as f:
        json.dump(
            {
                "preset": preset_to_dict(preset),
                "about": kind.plain_words()
                + (" Trained to regrow what is erased." if preset.train.damage_size else ""),
                "graphs": list(kind.browser_graphs),
                "schedule": kind.schedule(),
                "training": training,
                "results": shown,
            },
            f,
            indent=2,
        )
    return path
