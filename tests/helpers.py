"""Helpers the tests share (fixtures live in conftest.py)."""

import tensorflow as tf


def state_variables(checkpoint):
    """Checkpoint keys of the training state: all values but the records of one
    process (save count, best validation loss, wall-clock time)."""
    return [n for n, _ in tf.train.list_variables(checkpoint)
            if n.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
            and not n.startswith(("best_validation", "save_counter", "train_seconds"))]
