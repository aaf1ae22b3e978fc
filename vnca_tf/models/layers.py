"""Keras layers of the NCA decoder: Residual, UpdateNet and Doubling.

All layers take NHWC cell grids; the update network is applied to every cell
with the same weights (3x3 neighbourhood, then 1x1 convolutions). Convolutions
start from PyTorch's default initialisation, as in the authors' code, except the
update network's last one, which starts at zero.
"""

import keras
from keras import layers, ops

from vnca_tf.models.initializers import torch_defaults


def add_sublayers(owner: layers.Layer, prefix: str, sublayers) -> int:
    """Stores ``sublayers`` as attributes ``prefix_0``, ``prefix_1``, ... of
    ``owner`` and returns their number.

    Keras 3 does not put layers held in a list into tf.train.Checkpoint's object
    graph (their weights would be saved only through the optimizer); layers held
    in attributes are.
    """
    sublayers = list(sublayers)
    for index, sublayer in enumerate(sublayers):
        setattr(owner, f"{prefix}_{index}", sublayer)
    return len(sublayers)


def sublayers(owner: layers.Layer, prefix: str, count: int):
    """The layers ``add_sublayers`` stored."""
    return [getattr(owner, f"{prefix}_{index}") for index in range(count)]


@keras.saving.register_keras_serializable("vnca_tf")
class Residual(layers.Layer):
    """x + conv1x1(elu(conv1x1(x))): one residual block of the update network."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.inner = layers.Conv2D(channels, 1, name="conv_in", **torch_defaults(channels))
        self.outer = layers.Conv2D(channels, 1, name="conv_out", **torch_defaults(channels))

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build(input_shape[:-1] + (self.channels,))

    def call(self, x):
        return x + self.outer(ops.elu(self.inner(x)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable("vnca_tf")
class UpdateNet(layers.Layer):
    """The update u(z) every cell applies to its 3x3 neighbourhood.

    ``kind="residual"`` (the paper's doubling VNCA, appendix A.5): 3x3 conv to
    ``hidden_size``, ``num_residual_blocks`` Residual blocks, then a 1x1 conv back
    to ``state_size``. ``kind="small"`` (the non-doubling runs): 3x3 conv, ELU,
    ``num_hidden_layers`` x (1x1 conv, ELU), then a bias-free 1x1 conv. The last
    convolution starts at zero, so an untrained NCA leaves its cells unchanged.
    """

    def __init__(
        self,
        state_size: int,
        hidden_size: int,
        kind: str = "residual",
        num_residual_blocks: int = 4,
        num_hidden_layers: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in ("residual", "small"):
            raise ValueError(f"Unknown update net kind {kind!r}; use 'residual' or 'small'.")
        self.state_size = state_size
        self.hidden_size = hidden_size
        self.kind = kind
        self.num_residual_blocks = num_residual_blocks
        self.num_hidden_layers = num_hidden_layers
        self.perceive = layers.Conv2D(
            hidden_size, 3, padding="same", name="perceive", **torch_defaults(state_size * 3 * 3)
        )
        if kind == "residual":
            body = (Residual(hidden_size, name=f"residual_{i}") for i in range(num_residual_blocks))
        else:
            body = (
                layers.Conv2D(
                    hidden_size,
                    1,
                    activation="elu",
                    name=f"hidden_{i}",
                    **torch_defaults(hidden_size),
                )
                for i in range(num_hidden_layers)
            )
        self.body_size = add_sublayers(self, "body", body)
        self.out = layers.Conv2D(
            state_size,
            1,
            use_bias=(kind == "residual"),
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name="out",
        )

    def get_config(self):
        return {
            **super().get_config(),
            "state_size": self.state_size,
            "hidden_size": self.hidden_size,
            "kind": self.kind,
            "num_residual_blocks": self.num_residual_blocks,
            "num_hidden_layers": self.num_hidden_layers,
        }

    def build(self, input_shape):
        hidden_shape = tuple(input_shape[:-1]) + (self.hidden_size,)
        self.perceive.build(input_shape)
        for layer in sublayers(self, "body", self.body_size):
            layer.build(hidden_shape)
        self.out.build(hidden_shape)

    def call(self, cells):
        hidden = self.perceive(cells)
        if self.kind == "small":
            hidden = ops.elu(hidden)
        for layer in sublayers(self, "body", self.body_size):
            hidden = layer(hidden)
        return self.out(hidden)


def upsample(cells, factor: int):
    """Nearest-neighbour upsampling of an NHWC grid by an integer factor (every
    cell copied factor x factor times; the identity for 1)."""
    if factor == 1:
        return cells
    return ops.repeat(ops.repeat(cells, factor, axis=1), factor, axis=2)


@keras.saving.register_keras_serializable("vnca_tf")
class Doubling(layers.Layer):
    """Cell division: every cell is copied right, below and diagonally.

    Nearest-neighbour x2 upsampling of an NHWC grid: (B, H, W, C) -> (B, 2H, 2W, C).
    """

    def call(self, cells):
        return upsample(cells, 2)
