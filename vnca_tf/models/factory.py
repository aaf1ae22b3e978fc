"""The one factory from a config to a model class: a VNCA (doubling or not,
see models.vnca) or a convolutional baseline, by the config's kind."""

import keras

from vnca_tf.configs import PRECISIONS, ModelConfig, kind_of
from vnca_tf.configs.kinds import ConvolutionalBaseline
from vnca_tf.models.baselines import ConvBaseline
from vnca_tf.models.vae import VAE
from vnca_tf.models.vnca import VNCA


def build_model(config: ModelConfig, precision: str = "float32", recompute: bool = False) -> VAE:
    """The model a config describes: a VNCA or a convolutional baseline.

    ``precision``: the Keras dtype policy of the layers' computation;
    "mixed_bfloat16" computes convolutions in bfloat16 (fast on GPUs and on
    CPUs with bfloat16 units) while weights, cell states, the likelihood, the
    KL and the loss stay float32; "mixed_float16" likewise in float16 (train
    it with loss scaling: the Trainer does). ``recompute`` (VNCAs): recompute each
    NCA step in the backward pass instead of storing its activations.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    baseline = isinstance(kind_of(config), ConvolutionalBaseline)
    if baseline and recompute:
        raise ValueError(
            "recompute is for the steps of a VNCA's decoder; the "
            "convolutional baseline has none. Leave it off."
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return ConvBaseline(config) if baseline else VNCA(config, recompute)
    finally:
        keras.config.set_dtype_policy(previous)
