"""Helpers the tests share (fixtures live in conftest.py)."""

import os

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_params(layer) -> int:
    """Number of scalars in a layer's weights."""
    return sum(int(np.prod(weight.shape)) for weight in layer.weights)


def binary_images(rng, batch, side):
    """A batch of random 0/1 images, NHWC float32."""
    return (rng.random((batch, side, side, 1)) > 0.5).astype(np.float32)


def state_variables(checkpoint):
    """Checkpoint keys of the training state: all values but the records of one
    process (save count, best validation loss, wall-clock time)."""
    return [
        n
        for n, _ in tf.train.list_variables(checkpoint)
        if n.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
        and not n.startswith(("best_validation", "save_counter", "train_seconds"))
    ]
