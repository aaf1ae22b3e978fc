import numpy as np
import pytest
from helpers import count_params

from vnca_tf.models.encoder import Encoder


@pytest.mark.parametrize(
    "image_shape, latent_size, expected",
    [
        ((32, 32, 1), 256, 5_402_880),  # binarized MNIST padded to 32x32 (A.5)
        ((64, 64, 3), 256, 8_550_208),  # CelebA 64x64 (A.5)
        ((28, 28, 1), 128, 4_878_336),  # non-doubling MNIST, padding 4 (A.6)
    ],
)
def test_encoder_has_the_papers_parameter_count(image_shape, latent_size, expected):
    encoder = Encoder(latent_size)
    encoder.build((None,) + image_shape)
    assert count_params(encoder) == expected
    mean, log_sigma = encoder(np.zeros((2,) + image_shape, np.float32))
    assert mean.shape == log_sigma.shape == (2, latent_size)


def test_odd_sized_images_are_padded_to_a_multiple_of_16():
    encoder = Encoder(8, base_channels=4)
    encoder.build((None, 62, 62, 3))
    # 62 + 2 * 3 - 4 = 64 after the first conv, then 32, 16, 8, 4.
    assert encoder.dense.kernel.shape == (4 * 4 * 64, 16)
