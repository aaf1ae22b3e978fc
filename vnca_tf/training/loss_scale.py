"""Dynamic loss scaling for float16 training (mixed_float16)."""

import tensorflow as tf

from vnca_tf.training.distribution import MIRRORED


class DynamicLossScale(tf.Module):
    """Loss scaling for float16 (as Keras' LossScaleOptimizer does it): the
    gradients of loss * scale are divided by scale; an overflow halves the scale
    and the update is skipped; ``growth_interval`` finite steps in a row double
    it. Disabled, the scale stays 1.

    The scale may fall below 1, to ``minimum``: a sharp RGB likelihood far from
    its pixels has gradients of millions, past float16's 65,504 even unscaled
    (tests/test_finite_gradients.py); 2^-14 brings 1e9 within range. A
    non-finite step at a scale of 1 or less is counted as one (towards
    max_nonfinite in a row) although the scale still halves: a NaN that no
    scale cures stops the run as in float32, 15 halvings later."""

    def __init__(
        self,
        enabled: bool,
        initial: float = 2.0**15,
        growth_interval: int = 2000,
        minimum: float = 2.0**-14,
    ):
        super().__init__(name="loss_scale")
        self.enabled = enabled
        self.growth_interval = growth_interval
        self.minimum = minimum
        self.scale = tf.Variable(initial if enabled else 1.0, dtype=tf.float32, **MIRRORED)
        self.finite_steps = tf.Variable(0, dtype=tf.int64, **MIRRORED)

    def is_overflow(self, finite):
        """Whether a step's non-finite gradients are the scale's doing."""
        return tf.logical_not(finite) & (self.scale > 1.0) & self.enabled

    def update(self, finite):
        """Adjusts the scale after a step (cross-replica context)."""
        if not self.enabled:
            return
        grow = finite & (self.finite_steps + 1 >= self.growth_interval)
        self.scale.assign(
            tf.where(
                finite,
                tf.where(grow, self.scale * 2.0, self.scale),
                tf.maximum(self.scale / 2.0, self.minimum),
            )
        )
        self.finite_steps.assign(tf.where(finite & ~grow, self.finite_steps + 1, 0))
