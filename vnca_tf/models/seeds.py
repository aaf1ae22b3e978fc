"""Every conversion of a seed, in one place.

Random quantities come from stateless seeds: shape-[2] int32 tensors. A model
takes an int, a pair, or None (a fresh one); a SavedModel signature takes one
int64 scalar s (negative: fresh) and uses the pair (s, 0); evaluation gives
every image and importance sample its own seed (fold_in_each).
"""

import tensorflow as tf
import tensorflow_probability as tfp


def as_seed(seed):
    """A stateless seed (a shape-[2] int32 tensor) from an int, a pair (of any
    integer dtype), or None (None draws a fresh one)."""
    if isinstance(seed, int):
        seed = [seed, 0]
    elif tf.is_tensor(seed):
        seed = tf.cast(seed, tf.int32)
    return tfp.random.sanitize_seed(seed)


def split_seed(seed, n: int):
    """``n`` independent stateless seeds from ``seed`` (see ``as_seed``)."""
    return tfp.random.split_seed(as_seed(seed), n=n)


def for_each_seed(function, seeds, dtype):
    """``function(seed)`` for each row of ``seeds`` (N, 2), stacked: per-row
    stateless draws (a loop: TensorFlow's vectorizer has none for them)."""
    return tf.map_fn(function, seeds, fn_output_signature=dtype)


def fold_in_each(seeds, data):
    """Row i of ``seeds`` (N, 2) folded with ``data[i]`` (N,): N new seeds,
    each a function of its own row and datum only."""
    pairs = tf.concat([tf.cast(seeds, tf.int32), tf.cast(data, tf.int32)[:, None]], axis=1)
    return for_each_seed(
        lambda row: tf.random.experimental.stateless_fold_in(row[:2], row[2]), pairs, tf.int32
    )


def from_signature(seed):
    """A signature's int64 scalar ``seed`` as the pair (seed, 0); a negative
    one draws a fresh pair (in the graph)."""
    given = tf.cast(tf.stack([seed, tf.zeros_like(seed)]), tf.int32)
    fresh = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    return tf.where(seed < 0, fresh, given)


def to_signature(seed):
    """The int64 scalar a signature takes for an int s or the pair (s, 0) (see
    ``from_signature``); other seeds have no equivalent there."""
    if isinstance(seed, int):
        return tf.constant(seed, tf.int64)
    if tf.is_tensor(seed) and seed.shape == (2,):
        tf.debugging.assert_equal(
            seed[1],
            tf.zeros([], seed.dtype),
            message="An exported model takes seeds (s, 0) (or the int s).",
        )
        return tf.cast(seed[0], tf.int64)
    raise TypeError(f"An exported model takes int seeds, got {seed!r}.")
