"""TensorFlow.js models of the browser demo, converted from a SavedModel.

``convert("saved_models/mnist_heal_cpu/1", "web/models/mnist_heal_cpu")`` runs
the official converter (tensorflowjs_converter) on each ``browser_NAME``
signature of the SavedModel (vnca_tf.browser_graphs) and writes
``FOLDER/NAME/model.json`` (+ weights) and ``FOLDER/vnca.json``: the preset,
the graphs, how the model was trained and what it measured. The converter
pins another TensorFlow than this project, so it runs from its own
environment, made by ``web/make_converter_env.sh``.
"""

import dataclasses
import json
import os
import subprocess

from vnca_tf import browser_graphs, export
from vnca_tf.demo_server import MANIFEST

CONVERTER = os.path.join(".venv-tfjs", "bin", "tensorflowjs_converter")
# What the page shows of a model's results.json (evaluate.py).
RESULT_KEYS = ("log_likelihood_nats", "stderr_nats", "bits_per_dim", "num_examples",
               "num_samples", "healing")


def convert(saved_model: str, folder: str, converter: str = CONVERTER,
            results: dict = None) -> str:
    """Converts the browser graphs of the SavedModel version folder
    ``saved_model`` into ``folder``; ``results``: its evaluate.py report, if
    any. Returns the manifest's path."""
    preset, training = export.read_assets(saved_model)
    if not browser_graphs.supported(preset.model):
        raise ValueError(f"{preset.name} has no browser graphs: the demo runs VNCAs of "
                         "binary images (a *_cpu, mnist or mnist_damage preset).")
    if not os.path.isfile(converter):
        raise FileNotFoundError(
            f"No TensorFlow.js converter at {converter}; make its environment with "
            "web/make_converter_env.sh (or pass --tfjs_converter).")
    names = browser_graphs.graph_names(preset.model)
    for name in names:
        done = subprocess.run(
            [converter, "--input_format=tf_saved_model", "--saved_model_tags=serve",
             f"--signature_name={browser_graphs.SIGNATURE_PREFIX}{name}",
             saved_model, os.path.join(folder, name)], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"tensorflowjs_converter failed on the {name} graph of "
                               f"{saved_model}:\n{done.stderr[-2000:]}")
    shown = {key: value for key, value in (results or {}).items() if key in RESULT_KEYS}
    path = os.path.join(folder, MANIFEST)
    with open(path, "w") as f:
        json.dump({"preset": dataclasses.asdict(preset), "graphs": names,
                   "training": training, "results": shown}, f, indent=2)
    return path
