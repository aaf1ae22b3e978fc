"""Subsets that stand for a whole split: a seeded uniform draw without
replacement, never the head of the file (data files are often in class order:
the binarized MNIST test file starts with ~980 zeros).

The draw is NumPy's ``default_rng(seed).choice(total, count, replace=False)``
(PCG64, the same on every machine). A measured subset comes in file order,
each element with its index in the split, which evaluation seeds it by
(models.bounds.iwae_bounds); a figure's batch in the order drawn.
"""

from typing import Optional

import numpy as np
import tensorflow as tf


def draw_indices(total: int, count: Optional[int], seed: int) -> np.ndarray:
    """The indices of ``count`` of ``total`` elements drawn uniformly without
    replacement with ``seed``, in the order drawn (a random order); all of
    them, in order, for None or a count of ``total`` or more."""
    if count is not None and count < 1:
        raise ValueError(f"A subset needs at least 1 element, got {count}.")
    if count is None or count >= total:
        return np.arange(total)
    return np.random.default_rng(seed).choice(total, size=count, replace=False)


def count_elements(dataset: tf.data.Dataset) -> int:
    """The number of elements of a finite dataset (counted if unknown)."""
    total = int(dataset.cardinality())
    if total < 0:
        total = int(dataset.reduce(0, lambda count, _: count + 1))
    return total


def draw(dataset: tf.data.Dataset, count: Optional[int], seed: int):
    """``count`` elements of ``dataset`` drawn as ``draw_indices`` does, as a
    dataset of (index in the split, element), and what was drawn (a dict for
    reports: count, of, seed, how)."""
    total = count_elements(dataset)
    indices = draw_indices(total, count, seed)
    chosen = np.zeros(total, bool)
    chosen[indices] = True
    chosen = tf.constant(chosen)
    subset = (
        dataset.enumerate()
        .filter(lambda index, _: tf.gather(chosen, index))
        .map(lambda index, element: (tf.cast(index, tf.int32), element))
    )
    whole = len(indices) == total
    return subset, {
        "count": len(indices),
        "of": total,
        "seed": None if whole else seed,
        "how": "the whole split"
        if whole
        else "uniformly without replacement: numpy.random.default_rng(seed).choice, in file order",
    }


def describe(subset: dict, split: str) -> str:
    """A subset in words: "400 of the 10,000 test images, drawn with seed 0"."""
    if subset["seed"] is None:
        return f"all {subset['of']:,} {split} images"
    return (
        f"{subset['count']:,} of the {subset['of']:,} {split} images, "
        f"drawn with seed {subset['seed']}"
    )


def draw_batch(dataset: tf.data.Dataset, count: int, seed: int):
    """``count`` elements drawn as ``draw`` does, stacked as NumPy arrays
    (pairs stay pairs) in the order drawn, so that any leading part of them
    (a figure's first 8, say) is itself a uniform draw."""
    subset, _ = draw(dataset, count, seed)
    ids, batch = next(iter(subset.batch(count)))
    row_of = {int(index): row for row, index in enumerate(ids.numpy())}
    order = [row_of[int(index)] for index in draw_indices(count_elements(dataset), count, seed)]
    return tf.nest.map_structure(lambda t: t.numpy()[order], batch)
