"""The pool of grown states for pool and damage training (appendix A.3).

As the authors' code does it: when the pool holds more than half a batch, the
first half-batch of its entries is taken out and continued from (their cell
states replace the last half of the batch's seeds, rounded down; the first half of those,
or the fraction ``damaged``, get a zeroed square); after the step every new
(image, final cell state) pair goes in, the pool is shuffled and cut to its
capacity. Entries live in tf.Variables of fixed shape (capacity, ...) with a
``size`` counter, so the pool is in the checkpoint, has static shapes (XLA), and
is mirrored identically on every replica.

``mix`` makes a replica's batch for a step and ``update`` puts the step's
grown cells in: the Trainer needs nothing else of pool training.
"""

import tensorflow as tf

from vnca_tf.models.nca import damage_square
from vnca_tf.training.distribution import MIRRORED


class Pool(tf.Module):
    """Fixed-capacity storage of (image, cell state) pairs, for batches of
    ``replica_batch`` images on each of ``num_replicas`` replicas."""

    def __init__(
        self,
        capacity: int,
        image_shape,
        cell_shape,
        damage_size: int,
        replica_batch: int,
        num_replicas: int = 1,
        damaged: float = 0.5,
        name="pool",
    ):
        super().__init__(name=name)
        if replica_batch < 4:
            raise ValueError(
                f"Pool training needs at least 4 images per replica, got {replica_batch}."
            )
        self.capacity = capacity
        self.damage_size = damage_size
        self.replica_batch = replica_batch
        # The authors' split: half of each batch from the pool, a quarter damaged
        # (``damaged`` = 0.5 of the pooled half).
        self.served_per_replica = replica_batch // 2
        self.damaged_per_replica = round(self.served_per_replica * damaged)
        self.served = self.served_per_replica * num_replicas
        self.images = tf.Variable(
            tf.zeros([capacity, *image_shape], tf.uint8), name="images", **MIRRORED
        )
        self.cells = tf.Variable(
            tf.zeros([capacity, *cell_shape], tf.float32), name="cells", **MIRRORED
        )
        self.size = tf.Variable(0, dtype=tf.int32, name="size", **MIRRORED)

    def mix(self, images, replica, seed):
        """A replica's images and start cells for a step: once the pool can
        serve every replica, the second half of the batch continues from the
        replica's share of the pool's first entries (their images and cells),
        the first ``damaged`` of those damaged (a zeroed square from ``seed``).
        Returns (images, start_cells, use_start); see VAE.loss_terms."""
        half, damaged = self.served_per_replica, self.damaged_per_replica
        fresh = self.replica_batch - half  # The larger half of an odd batch, as the authors'.
        use_pool = self.can_serve(self.served)
        pool_images, pool_cells = self.head(replica * half, half)
        damaged_cells = damage_square(
            pool_cells[:damaged],
            self.damage_size,
            tf.random.experimental.stateless_fold_in(seed, replica),
        )
        start_cells = tf.concat(
            [tf.zeros([fresh, *pool_cells.shape[1:]]), damaged_cells, pool_cells[damaged:]], 0
        )
        use_start = use_pool & (tf.range(self.replica_batch) >= fresh)
        images = tf.where(use_pool, tf.concat([images[:fresh], pool_images], 0), images)
        return images, start_cells, use_start

    def update(self, images, final_cells, seed):
        """After a step (cross-replica): drops the entries ``mix`` served and adds
        the step's (image, grown cells) pairs of all replicas."""
        taken = tf.where(self.can_serve(self.served), self.served, 0)
        self.refill(taken, images, final_cells, seed)

    def can_serve(self, count: int):
        """Whether the pool holds more than ``count`` entries (the authors' rule)."""
        return self.size > count

    def head(self, start: int, count: int):
        """Entries [start, start + count) of the pool: (images, cells)."""
        return self.images[start : start + count], self.cells[start : start + count]

    def refill(self, num_taken, images, cells, seed):
        """Drops the first ``num_taken`` entries, adds the new pairs, shuffles with
        the stateless ``seed`` and keeps at most ``capacity`` entries."""
        images = tf.cast(images, tf.uint8)
        cells = tf.cast(cells, tf.float32)
        index = tf.range(self.capacity)
        kept = (index >= num_taken) & (index < self.size)
        valid = tf.concat([kept, tf.ones(tf.shape(images)[:1], tf.bool)], 0)
        keys = tf.random.stateless_uniform(tf.shape(valid), seed)
        order = tf.argsort(tf.where(valid, keys, 2.0))[: self.capacity]
        self.images.assign(tf.gather(tf.concat([self.images, images], 0), order))
        self.cells.assign(tf.gather(tf.concat([self.cells, cells], 0), order))
        self.size.assign(tf.minimum(self.capacity, tf.reduce_sum(tf.cast(valid, tf.int32))))
