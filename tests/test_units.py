import math

import numpy as np

from vnca_tf import units


def test_bits_per_dim_follows_the_papers_formula():
    # CelebA 64x64x3: 4.42 bits/dim is 4.42 * 12288 * ln 2 nats per image.
    nats = -4.42 * 64 * 64 * 3 * math.log(2)
    assert math.isclose(units.nats_to_bits_per_dim(nats, 64 * 64 * 3), 4.42)
    assert math.isclose(units.bits_per_dim_to_nats(4.42, 12288), nats)


def test_conversions_are_inverse_on_arrays():
    nats = np.array([-84.23, -90.97, -700.0])
    bpd = units.nats_to_bits_per_dim(nats, 1024)
    np.testing.assert_allclose(units.bits_per_dim_to_nats(bpd, 1024), nats)
    np.testing.assert_allclose(bpd[0], 84.23 / (1024 * math.log(2)))
