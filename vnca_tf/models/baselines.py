"""The deep convolutional VAE baselines of appendix A.6 (MNIST) and A.1 (CelebA).

The VNCA's encoder; a dense layer from z to a 2x2 grid of ``baseline_channels``
(an ELU after it in A.1, none in A.6); stride-2 5x5 transposed convolutions, each
doubling the grid and halving the channels, with ELUs, until the grid covers the
image (cropped as PyTorch's padding=2, output_padding=1 does); a last 5x5
transposed convolution to the likelihood's channels, cropped to the image
(PyTorch's padding: 4 for 28x28 MNIST, 2 for 64x64 CelebA).
Every layer starts from PyTorch's default initialisation, as the authors' did.
"""

import math

import keras
import tensorflow as tf
from keras import layers

from vnca_tf.configs import INITIAL_SIDE, ModelConfig
from vnca_tf.models.initializers import torch_defaults
from vnca_tf.models.layers import add_sublayers, sublayers
from vnca_tf.models.nca import damage_right_half
from vnca_tf.models.vae import VAE

_KERNEL = 5


@keras.saving.register_keras_serializable("vnca_tf")
class ConvBaseline(VAE):
    """A VAE with a transposed-convolution decoder (same interface as VNCA)."""

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(config, **kwargs)
        height, width, _ = config.image_shape
        self.num_upsamplings = max(1, math.ceil(math.log2(max(height, width) / INITIAL_SIDE)))
        grown = INITIAL_SIDE * 2**self.num_upsamplings
        self.crop = ((grown + _KERNEL - 1 - height) // 2, (grown + _KERNEL - 1 - width) // 2)
        channels = config.baseline_channels
        pytorch = config.baseline_upsampling == "pytorch"
        self.dense = layers.Dense(
            INITIAL_SIDE * INITIAL_SIDE * channels,
            activation="elu" if config.baseline_dense_elu else None,
            name="dense",
            **torch_defaults(config.latent_size),
        )
        # A transposed convolution's fan-in is out_channels * 5 * 5 (PyTorch's rule).
        add_sublayers(
            self,
            "upsample",
            (
                layers.Conv2DTranspose(
                    channels // 2 ** (i + 1),
                    _KERNEL,
                    strides=2,
                    padding="valid" if pytorch else "same",
                    activation="elu",
                    name=f"upsample_{i}",
                    **torch_defaults(channels // 2 ** (i + 1) * _KERNEL**2),
                )
                for i in range(self.num_upsamplings)
            ),
        )
        # The authors' up-convolution is PyTorch's ConvTranspose2d(5, stride=2,
        # padding=2, output_padding=1): of the full 2n + 3 outputs it keeps
        # [2, 2n + 2). (Keras' padding="same" keeps [1, 2n + 1), a pixel off:
        # baseline_upsampling="keras_same", the baselines saved before.)
        self.pytorch_crop = layers.Cropping2D(((2, 1), (2, 1)) if pytorch else 0)
        cell_channels = self.likelihood.cell_channels
        self.out = layers.Conv2DTranspose(
            cell_channels, _KERNEL, name="out", **torch_defaults(cell_channels * _KERNEL**2)
        )
        self.dense.build((None, config.latent_size))
        shape = (None, INITIAL_SIDE, INITIAL_SIDE, channels)
        for layer in self.upsamplers:
            layer.build(shape)
            shape = self.pytorch_crop.compute_output_shape(layer.compute_output_shape(shape))
        self.out.build(shape)
        self.built = True

    @property
    def upsamplers(self):
        return sublayers(self, "upsample", self.num_upsamplings)

    def decode_cells(
        self,
        z,
        seed=None,
        num_steps=None,
        rows=None,
        start_cells=None,
        use_start=None,
        damage_before: int = None,
    ):
        """The decoder's output (B, H, W, likelihood channels); ``seed``,
        ``num_steps`` and ``rows`` are unused (the decoder is deterministic), and
        it grows no cells to start from (``start_cells`` must be None). With
        ``damage_before=i``, the right half of the hidden state is zeroed just
        before up-convolution i (0 = the 2x2 grid; the paper's Fig. 11)."""
        del seed, num_steps, rows, use_start
        if start_cells is not None:
            raise ValueError(
                "The convolutional baseline grows no cells to start from; "
                "pool training is for non-doubling VNCAs."
            )
        channels = self.config.baseline_channels
        hidden = tf.reshape(self.dense(z), [-1, INITIAL_SIDE, INITIAL_SIDE, channels])
        for index, layer in enumerate(self.upsamplers):
            if index == damage_before:
                hidden = damage_right_half(hidden)
            hidden = self.pytorch_crop(layer(hidden))
        if damage_before == self.num_upsamplings:
            hidden = damage_right_half(hidden)
        out = self.out(hidden)
        (top, left), (height, width) = self.crop, self.config.image_shape[:2]
        return out[:, top : top + height, left : left + width]

    def damage_at_each_upsampling(self, z, num_stages: int):
        """Mean images of z decoded with the right half of the hidden state zeroed,
        beside a VNCA's ``num_stages`` stages of damage: stage s is damaged before
        up-convolution max(s - 1, 0) (t = 0 and M both map to the first, as in
        the paper's Fig. 11), stacked to (num_stages, B, H, W, C)."""
        return tf.stack(
            [
                self.mean_image_of(self.decode_cells(z, damage_before=max(s - 1, 0)))
                for s in range(num_stages)
            ]
        )
