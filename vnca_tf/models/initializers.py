"""PyTorch's default initialisation of convolutions and dense layers, as Keras
initializers (the authors' code used it for every layer but the update
network's last one).

PyTorch draws a Conv2d / Linear weight from kaiming_uniform(a = sqrt(5)), which
is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and its bias from the same interval.
fan_in is in_channels * kh * kw (in_features for a Linear); for a transposed
convolution PyTorch takes out_channels * kh * kw, which is also what Keras'
fan-in computes from a Conv2DTranspose kernel (kh, kw, out, in).
"""

import math

import keras


def torch_kernel() -> keras.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a kernel: fan-in variance scaling
    with scale 1/3 (the uniform bound is sqrt(3 * scale / fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


@keras.saving.register_keras_serializable("vnca_tf")
class FanInUniform(keras.initializers.RandomUniform):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's bias initialisation. A bias'
    shape does not tell its layer's fan-in, so the layer passes it."""

    def __init__(self, fan_in: int, seed=None):
        if fan_in < 1:
            raise ValueError(f"fan_in must be >= 1, got {fan_in}.")
        self.fan_in = fan_in
        bound = 1.0 / math.sqrt(fan_in)
        super().__init__(-bound, bound, seed)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


def torch_defaults(fan_in: int) -> dict:
    """Keyword arguments giving a Keras Conv2D, Conv2DTranspose or Dense PyTorch's
    default initialisation; ``fan_in`` is the layer's (see the module docstring)."""
    return dict(kernel_initializer=torch_kernel(), bias_initializer=FanInUniform(fan_in))
