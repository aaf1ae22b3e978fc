"""The encoder q(z|x) of appendix A.5: a deep convolutional network to a Gaussian.

Conv 5x5 (32 channels, stride 1), then four Conv 5x5 stride-2 layers doubling
the channels (64, 128, 256, 512), ELU after each, flatten, Dense to 2|z|: the
first half is the mean, the second half log(sigma), the log standard deviation
(as the authors' code reads it). Every layer starts from PyTorch's default
initialisation (``vnca_tf.models.initializers``), as the authors' did. Padding is
explicit and as in PyTorch (2 on every side), so the layer shapes are the
authors'; images whose side is not a multiple of 16 get the extra zeros in the
first padding (MNIST 28x28: 4 on each side, as the baseline of appendix A.6;
CelebA 62x62: 3).
"""

import keras
from keras import layers

from vnca_tf.configs import ENCODER_DOWNSAMPLING
from vnca_tf.models.initializers import torch_defaults
from vnca_tf.models.layers import add_sublayers, sublayers

_KERNEL = 5
_PAD = _KERNEL // 2
_NUM_STRIDED = 4


def _first_padding(side: int):
    """(before, after) zeros that bring ``side`` up to a multiple of 16 and add the
    convolution's own 2."""
    extra = -side % ENCODER_DOWNSAMPLING
    return (_PAD + extra // 2, _PAD + extra - extra // 2)


@keras.saving.register_keras_serializable("vnca_tf")
class Encoder(keras.layers.Layer):
    """Images (B, H, W, C), as the likelihood scales them for the encoder ->
    (mean, log_sigma), each (B, latent_size). The layers are made in ``build``:
    the first one's and the dense layer's fan-in depend on the image shape."""

    def __init__(self, latent_size: int, base_channels: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.base_channels = base_channels
        self.flatten = layers.Flatten()

    def get_config(self):
        return {
            **super().get_config(),
            "latent_size": self.latent_size,
            "base_channels": self.base_channels,
        }

    def build(self, input_shape):
        _, height, width, channels = input_shape
        base = self.base_channels
        self.first_conv = layers.Conv2D(
            base, _KERNEL, activation="elu", name="conv_0", **torch_defaults(channels * _KERNEL**2)
        )
        add_sublayers(
            self,
            "strided",
            (
                layers.Conv2D(
                    base * 2**i,
                    _KERNEL,
                    strides=2,
                    activation="elu",
                    name=f"conv_{i}",
                    **torch_defaults(base * 2 ** (i - 1) * _KERNEL**2),
                )
                for i in range(1, _NUM_STRIDED + 1)
            ),
        )
        self.first_padding = layers.ZeroPadding2D((_first_padding(height), _first_padding(width)))
        self.padding = layers.ZeroPadding2D(_PAD)
        shape = (
            None,
            height + sum(_first_padding(height)),
            width + sum(_first_padding(width)),
            channels,
        )
        self.first_conv.build(shape)
        shape = self.first_conv.compute_output_shape(shape)
        for conv in sublayers(self, "strided", _NUM_STRIDED):
            shape = self.padding.compute_output_shape(shape)
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        flat_size = shape[1] * shape[2] * shape[3]
        self.dense = layers.Dense(2 * self.latent_size, name="dense", **torch_defaults(flat_size))
        self.dense.build((None, flat_size))

    def call(self, images):
        hidden = self.first_conv(self.first_padding(images))
        for conv in sublayers(self, "strided", _NUM_STRIDED):
            hidden = conv(self.padding(hidden))
        out = self.dense(self.flatten(hidden))
        return out[:, : self.latent_size], out[:, self.latent_size :]
