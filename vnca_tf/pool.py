"""The pool of grown states for pool and damage training (appendix A.3).

As the authors' code does it: when the pool holds more than half a batch, the
first half-batch of its entries is taken out and continued from (their cell
states replace the second half of the batch's seeds); after the step every new
(image, final cell state) pair goes in, the pool is shuffled and cut to its
capacity. Entries live in tf.Variables of fixed shape (capacity, ...) with a
``size`` counter, so the pool is in the checkpoint, has static shapes (XLA), and
is mirrored identically on every replica.
"""

import tensorflow as tf

_MIRRORED = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class Pool(tf.Module):
    """Fixed-capacity storage of (image, cell state) pairs."""

    def __init__(self, capacity: int, image_shape, cell_shape, name="pool"):
        super().__init__(name=name)
        self.capacity = capacity
        self.images = tf.Variable(tf.zeros([capacity, *image_shape], tf.uint8),
                                  name="images", **_MIRRORED)
        self.cells = tf.Variable(tf.zeros([capacity, *cell_shape], tf.float32),
                                 name="cells", **_MIRRORED)
        self.size = tf.Variable(0, dtype=tf.int32, name="size", **_MIRRORED)

    def can_serve(self, count: int):
        """Whether the pool holds more than ``count`` entries (the authors' rule)."""
        return self.size > count

    def head(self, start: int, count: int):
        """Entries [start, start + count) of the pool: (images, cells)."""
        return self.images[start:start + count], self.cells[start:start + count]

    def refill(self, num_taken, images, cells, seed):
        """Drops the first ``num_taken`` entries, adds the new pairs, shuffles with
        the stateless ``seed`` and keeps at most ``capacity`` entries."""
        images = tf.cast(images, tf.uint8)
        cells = tf.cast(cells, tf.float32)
        index = tf.range(self.capacity)
        kept = (index >= num_taken) & (index < self.size)
        valid = tf.concat([kept, tf.ones(tf.shape(images)[:1], tf.bool)], 0)
        keys = tf.random.stateless_uniform(tf.shape(valid), seed)
        order = tf.argsort(tf.where(valid, keys, 2.0))[:self.capacity]
        self.images.assign(tf.gather(tf.concat([self.images, images], 0), order))
        self.cells.assign(tf.gather(tf.concat([self.cells, cells], 0), order))
        self.size.assign(tf.minimum(self.capacity,
                                    tf.reduce_sum(tf.cast(valid, tf.int32))))
