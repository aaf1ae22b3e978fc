"""Models (Keras layers and TFP distributions): the encoder, the update
network, the two NCA decoders, the likelihoods, the VAE, the VNCA and the
convolutional baselines; ``build_model`` makes the one a config describes."""

from vnca_tf.models.factory import build_model
from vnca_tf.models.interface import GenerativeModel

__all__ = ["GenerativeModel", "build_model"]
