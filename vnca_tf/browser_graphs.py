"""The small graphs a browser runs to grow a VNCA step by step (TensorFlow.js).

A page that animates growth and damage needs the model in pieces, each one a
deterministic graph (tensorflowjs_converter refuses TensorFlow's stateless
random ops; the page draws its own update masks):

* ``encode``: images (B, H, W, C), the data's values -> ``latents``, the
  posterior means (B, Z);
* ``initial_cells``: latents -> ``cells``, the first grid (2x2 for a doubling
  VNCA, the whole image for a non-doubling one);
* ``step``: cells (B, h, w, Z), mask (B, h, w, 1) of 0/1 -> ``cells`` after one
  NCA step, updating the cells where the mask is 1;
* ``double``: cells -> ``cells`` with every cell divided into four (doubling
  VNCA only);
* ``picture``: cells -> ``image``, the likelihood's mean image in [0, 1]
  (binary images only: the logistic mixture's mean is drawn by sampling).

``save(model, folder)`` writes each as a SavedModel ``folder/NAME`` with one
``serving_default`` signature, the form tensorflowjs_converter takes;
``convert(...)`` runs the official converter on them (it pins another
TensorFlow than this project, so it lives in its own environment, made by
``web/make_converter_env.sh``) and writes ``vnca.json`` beside the graphs.
"""

import dataclasses
import json
import os
import subprocess
import tempfile

import tensorflow as tf

CONVERTER = os.path.join(".venv-tfjs", "bin", "tensorflowjs_converter")
MANIFEST = "vnca.json"

GRAPHS = ("encode", "initial_cells", "step", "double", "picture")


class BrowserGraphs(tf.Module):
    """The pieces of ``model`` (a VNCA with a Bernoulli likelihood) as tf.functions."""

    def __init__(self, model):
        super().__init__(name="vnca_browser")
        config = model.config
        if config.architecture != "vnca" or config.likelihood != "bernoulli":
            raise ValueError("The browser graphs are for VNCAs of binary images (an NCA "
                             "decoder and a deterministic mean image); this model is a "
                             f"{config.architecture} with a {config.likelihood} likelihood.")
        self.model = model
        latent = config.latent_size
        images = tf.TensorSpec([None, *config.image_shape], tf.float32, name="images")
        latents = tf.TensorSpec([None, latent], tf.float32, name="latents")
        cells = tf.TensorSpec([None, None, None, latent], tf.float32, name="cells")
        mask = tf.TensorSpec([None, None, None, 1], tf.float32, name="mask")
        decoder = model.decoder
        self.functions = {
            "encode": tf.function(lambda images: {"latents": model.encode_mean(images)},
                                  input_signature=[images]),
            "initial_cells": tf.function(
                lambda latents: {"cells": decoder.initial_cells(latents)},
                input_signature=[latents]),
            "step": tf.function(lambda cells, mask: {"cells": decoder.step(cells, mask)},
                                input_signature=[cells, mask]),
            "picture": tf.function(lambda cells: {"image": model.mean_image_of(cells)},
                                   input_signature=[cells]),
        }
        if config.decoder == "doubling":
            self.functions["double"] = tf.function(
                lambda cells: {"cells": decoder.doubling(cells)}, input_signature=[cells])


def save(model, folder: str) -> dict:
    """Writes each graph of ``model`` as the SavedModel ``folder/NAME``; returns
    {name: path}."""
    graphs = BrowserGraphs(model)
    paths = {}
    for name, function in graphs.functions.items():
        path = os.path.join(folder, name)
        tf.saved_model.save(graphs, path, signatures={"serving_default": function})
        paths[name] = path
    return paths


def convert(model, preset, folder: str, converter: str = CONVERTER,
            record: dict = None) -> str:
    """Writes ``model``'s graphs as TensorFlow.js graph models ``folder/NAME/``
    and ``folder/vnca.json`` (the preset, the graphs, ``record``: how it was
    trained and measured); returns the manifest's path."""
    if not os.path.isfile(converter):
        raise FileNotFoundError(
            f"No TensorFlow.js converter at {converter}; make its environment with "
            "web/make_converter_env.sh (or pass --tfjs_converter).")
    with tempfile.TemporaryDirectory() as saved:
        names = list(save(model, saved))
        for name in names:
            subprocess.run([converter, "--input_format=tf_saved_model",
                            "--signature_name=serving_default", "--saved_model_tags=serve",
                            os.path.join(saved, name), os.path.join(folder, name)],
                           check=True, capture_output=True)
    path = os.path.join(folder, MANIFEST)
    with open(path, "w") as f:
        json.dump({"preset": dataclasses.asdict(preset), "graphs": names,
                   "record": record or {}}, f, indent=2)
    write_index(os.path.dirname(os.path.abspath(folder)))
    return path


def write_index(models_folder: str) -> str:
    """Writes models_folder/index.json, the models the page offers: those that
    regrow (non-doubling) first, then by name; the page opens the first."""
    entries = []
    for name in sorted(os.listdir(models_folder)):
        manifest = os.path.join(models_folder, name, MANIFEST)
        if os.path.isfile(manifest):
            with open(manifest) as f:
                doubling = json.load(f)["preset"]["model"]["decoder"] == "doubling"
            entries.append((doubling, name))
    path = os.path.join(models_folder, "index.json")
    with open(path, "w") as f:
        json.dump([name for _, name in sorted(entries)], f, indent=2)
    return path
