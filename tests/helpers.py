"""Helpers the tests share (fixtures live in conftest.py)."""

import dataclasses
import os

import numpy as np
import presets
import tensorflow as tf

from vnca_tf.configs import RunConfig
from vnca_tf.training.loop import Trainer
from vnca_tf.training.run_folder import save_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_params(layer) -> int:
    """Number of scalars in a layer's weights."""
    return sum(int(np.prod(weight.shape)) for weight in layer.weights)


def mirrored_strategy(devices):
    """A MirroredStrategy whose collective keys no earlier one in this process
    used: two with the same key base share collective instances, and the second
    fails with "Shape mismatch in the collective instance" (TensorFlow's own
    tests raise the base the same way, in strategy_combinations.py)."""
    tf.distribute.MirroredStrategy._collective_key_base += 100000
    return tf.distribute.MirroredStrategy(devices)


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


def quiet_preset(name: str, **train_changes):
    """The test preset ``name`` at learning rate 1e-3, with no validation, images
    or checkpoints before step 1000, and ``train_changes``."""
    preset = presets.get(name)
    train = dataclasses.replace(
        preset.train,
        **{
            "learning_rate": 1e-3,
            "validation_every": 1000,
            "image_every": 1000,
            "checkpoint_every": 1000,
            **train_changes,
        },
    )
    return dataclasses.replace(preset, train=train)


def train_tiny(name: str, model_dir: str, data_dir: str, steps: int = 10) -> str:
    """Trains the test preset ``name`` for ``steps`` steps into ``model_dir``
    (its latest and best checkpoints, config.json); returns model_dir."""
    preset = quiet_preset(name)
    Trainer(preset, model_dir, run=RunConfig(data_dir=data_dir)).train(steps, progress=False)
    save_config(model_dir, preset)
    return model_dir
