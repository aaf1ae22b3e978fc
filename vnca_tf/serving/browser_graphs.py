"""The small graphs a browser runs to grow a VNCA step by step (TensorFlow.js).

A page that animates growth and damage needs the model in pieces, each one a
deterministic graph (tensorflowjs_converter refuses TensorFlow's stateless
random ops; the page draws its own update masks), its inputs checked like the
other signatures' (the converter strips the checks):

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

The exported SavedModel carries them as the signatures ``browser_NAME``
(serving.export), so that one file both serves them and converts to
TensorFlow.js (serving.tfjs). Which graphs a model has, its kind says
(configs.kinds: none for a model the demo cannot show).
"""

import tensorflow as tf

from vnca_tf.serving import input_checks

SIGNATURE_PREFIX = "browser_"


def functions(model) -> dict:
    """{name: tf.function} of ``model``'s graphs (see the module docstring)."""
    config = model.config
    names = model.kind.browser_graphs
    if not names:
        raise ValueError(
            "The browser graphs are for VNCAs of binary images (an NCA "
            "decoder and a deterministic mean image); this model is a "
            f"{model.kind.describe()} with a {config.likelihood} likelihood."
        )
    latent = config.latent_size
    images = tf.TensorSpec([None, *config.image_shape], tf.float32, name="images")
    latents = tf.TensorSpec([None, latent], tf.float32, name="latents")
    cells = tf.TensorSpec([None, None, None, latent], tf.float32, name="cells")
    mask = tf.TensorSpec([None, None, None, 1], tf.float32, name="mask")
    decoder = model.decoder

    def checked_cells(cells):
        return input_checks.cells(cells, latent)

    def step(cells, mask):
        cells = checked_cells(cells)
        return {"cells": decoder.step(cells, input_checks.mask(mask, cells))}

    # The inputs are checked in the graph (TF Serving answers a bad request
    # with the check's message); tensorflowjs_converter strips the checks.
    graphs = {
        "encode": tf.function(
            lambda images: {
                "latents": model.posterior_of_checked(input_checks.images(images, model)).mean()
            },
            input_signature=[images],
        ),
        "initial_cells": tf.function(
            lambda latents: {"cells": decoder.initial_cells(input_checks.latents(latents, latent))},
            input_signature=[latents],
        ),
        "step": tf.function(step, input_signature=[cells, mask]),
        "double": tf.function(
            lambda cells: {"cells": decoder.doubling(checked_cells(cells))}, input_signature=[cells]
        ),
        "picture": tf.function(
            lambda cells: {"image": model.mean_image_of(checked_cells(cells))},
            input_signature=[cells],
        ),
    }
    return {name: graphs[name] for name in names}


def signatures(model) -> dict:
    """The SavedModel signatures ``browser_NAME`` of ``model``; none for a model
    without browser graphs."""
    if not model.kind.browser_graphs:
        return {}
    return {SIGNATURE_PREFIX + name: function for name, function in functions(model).items()}
