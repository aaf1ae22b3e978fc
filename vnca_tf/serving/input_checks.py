"""In-graph checks of what a SavedModel signature is given: shapes, finite
values, value ranges and counts, each failing with a message that names what
was expected (TF Serving returns it to the client).

The limits keep one request within memory: at most MAX_BATCH images, latents,
samples or cell grids a call, and at most MAX_LATENTS importance-sampled
latents (k x batch) for the log-likelihood, which decodes them MAX_BATCH grids
at a time (serving.export), so that no call decodes more grids at once than
``decode`` at its cap.
"""

import tensorflow as tf

MAX_BATCH = 1024
MAX_LATENTS = 2**18


def _all(condition, message):
    return tf.debugging.assert_equal(tf.reduce_all(condition), True, message=message)


def finite(values, name: str):
    """The check that ``values`` holds no NaN or infinity."""
    return _all(tf.math.is_finite(values), f"{name} must be finite numbers (no NaN or infinity)")


def count(value, name: str, limit: int, hint: str = ""):
    """The check that the scalar ``value`` is in [1, limit]."""
    return _all((value >= 1) & (value <= limit), f"{name} must be in [1, {limit:,}]{hint}")


def batch(values, name: str):
    """The check that ``values`` holds at most MAX_BATCH items."""
    return count(
        tf.shape(values)[0],
        f"the batch of {name}",
        MAX_BATCH,
        "; split larger ones over several calls",
    )


def checked(values, checks, shape=None):
    """``values`` once ``checks`` have passed (their static ``shape`` if given)."""
    with tf.control_dependencies(checks):
        values = tf.identity(values)
    return values if shape is None else tf.ensure_shape(values, shape)


def images(values, model):
    """Images (B, H, W, C) of the model's shape, finite, in its value range."""
    shape = tuple(model.config.image_shape)
    shape_ok = tf.debugging.assert_equal(
        tf.shape(values)[1:],
        tf.constant(shape),
        message=f"images must have shape (batch, {shape[0]}, {shape[1]}, {shape[2]}) (NHWC)",
    )
    with tf.control_dependencies([shape_ok, finite(values, "images"), batch(values, "images")]):
        values_ok = model.likelihood.check_values(values)
    return checked(values, [values_ok], (None,) + shape)


def latents(values, size: int):
    """Latents (B, size), finite."""
    size_ok = tf.debugging.assert_equal(
        tf.shape(values)[1], size, message=f"latents must have shape (batch, {size})"
    )
    return checked(
        values, [size_ok, finite(values, "latents"), batch(values, "latents")], [None, size]
    )


def cells(values, size: int):
    """Cell grids (B, h, w, size), finite."""
    size_ok = tf.debugging.assert_equal(
        tf.shape(values)[3], size, message=f"cells must have shape (batch, height, width, {size})"
    )
    return checked(
        values, [size_ok, finite(values, "cells"), batch(values, "cells")], [None, None, None, size]
    )


def mask(values, cells):
    """A 0/1 mask (B, h, w, 1) over ``cells``' grid."""
    shape_ok = tf.debugging.assert_equal(
        tf.shape(values),
        tf.concat([tf.shape(cells)[:3], [1]], 0),
        message="mask must have shape (batch, height, width, 1) of the cells",
    )
    return checked(
        values,
        [shape_ok, _all((values == 0.0) | (values == 1.0), "mask must hold 0 or 1 per cell")],
    )
