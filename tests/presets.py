"""Tiny presets for the tests: the paper's models shrunk until a step takes
milliseconds. The scripts take them as --preset=tests/presets.py:NAME. The
binarized MNIST ones train on its train split, so that they validate on its
validation split (the paper's train on both, and so have no validation)."""

import dataclasses
import os

from vnca_tf.configs import get_preset, paper
from vnca_tf.configs.schema import Preset, TrainConfig

FILE = os.path.abspath(__file__)
_TINY = dict(latent_size=16, hidden_size=16, encoder_channels=4)

PRESETS = {
    preset.name: preset
    for preset in (
        Preset(
            "test_mnist",
            "binarized_mnist",
            dataclasses.replace(paper.MNIST, num_residual_blocks=1, steps_per_stage=2, **_TINY),
            TrainConfig(batch_size=8, num_steps=20, train_split="train"),
            "A tiny doubling VNCA for tests.",
        ),
        Preset(
            "test_mnist_damage",
            "binarized_mnist",
            dataclasses.replace(paper.MNIST_DAMAGE, min_steps=3, max_steps=5, **_TINY),
            TrainConfig(
                batch_size=8, num_steps=20, pool_size=16, damage_size=14, train_split="train"
            ),
            "A tiny non-doubling VNCA (stochastic updates) for tests.",
        ),
        Preset(
            "test_mnist_baseline",
            "binarized_mnist",
            dataclasses.replace(
                paper.MNIST_BASELINE, latent_size=16, encoder_channels=4, baseline_channels=64
            ),
            TrainConfig(batch_size=8, num_steps=20, train_split="train"),
            "A tiny convolutional baseline for tests.",
        ),
        Preset(
            "test_celeb_a",
            "celeb_a",
            dataclasses.replace(
                paper.CELEB_A,
                image_shape=(16, 16, 3),
                num_doublings=3,
                num_residual_blocks=1,
                steps_per_stage=2,
                **_TINY,
            ),
            TrainConfig(batch_size=8, num_steps=20),
            "A tiny doubling VNCA on 16x16 RGB for tests.",
        ),
    )
}


def flag(name: str) -> str:
    """The train.py flag that picks test preset ``name``."""
    return f"--preset={FILE}:{name}"


def get(name: str) -> Preset:
    """A test preset, or any preset of the package."""
    return PRESETS[name] if name in PRESETS else get_preset(name)
