"""vnca_tf: Variational Neural Cellular Automata in TensorFlow 2, Keras 3 and TFP.

import vnca_tf
model = vnca_tf.load("mnist_regrow_long_cpu")   # a shipped model, a run or an export
fresh = vnca_tf.VNCA.from_preset("mnist")        # an untrained one
"""

import importlib

# Loaded on first use, so that ``import vnca_tf.configs`` (the scripts, before
# their flags are parsed) does not import TensorFlow.
_LAZY = {"load": "vnca_tf.loading", "VNCA": "vnca_tf.models.vnca", "build_model": "vnca_tf.models"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vnca_tf' has no attribute {name!r}")


__all__ = list(_LAZY)
