import math

import numpy as np
import presets

from vnca_tf.common import units
from vnca_tf.training.summaries import describe_loss


def test_bits_per_dim_follows_the_papers_formula():
    # CelebA 64x64x3: 4.42 bits/dim is 4.42 * 12288 * ln 2 nats per image.
    nats = 4.42 * 64 * 64 * 3 * math.log(2)
    assert math.isclose(units.bits_per_dim(nats, 64 * 64 * 3), 4.42)
    np.testing.assert_allclose(
        units.bits_per_dim(np.array([84.23, 0.0]), 1024), [84.23 / (1024 * math.log(2)), 0.0]
    )


def test_the_console_shows_a_loss_as_positive_bits_per_dim():
    # The console once printed "loss 84033.23 (-9.8661 bits/dim)".
    assert describe_loss(84033.23, presets.get("celeb_a")) == "9.8661 bits/dim"
    assert describe_loss(91.23, presets.get("mnist")) == "ELBO -91.23 nats"


def test_bits_per_dim_divide_by_the_datasets_own_dimensions():
    # MNIST is 28x28 whatever grid a model grows it on (32x32: zero padding).
    for name in ("mnist", "mnist_cpu", "mnist_damage"):
        assert presets.get(name).num_dimensions == 784
    assert presets.get("celeb_a").num_dimensions == 64 * 64 * 3
    assert presets.get("celeb_a_damage").num_dimensions == 32 * 32 * 3
    assert presets.get("noto_emoji").num_dimensions == 64 * 64 * 3
