"""One training step, from the global batch to the update.

distributed step (all replicas) -> replica step (its share of the batch, mixed
with pooled cells, its noise) -> loss and gradients (one microbatch at a time),
then: gradients all-reduced, their global norm clipped, Adam as PyTorch
computes it, the pool updated; a non-finite update skipped and counted. The
loss is averaged over the global batch, so a step means the same on any number
of replicas. Every random number of step t comes from a stateless seed derived
from (config seed, t): the same step on the same device and compilation mode
gives the same result, which exact resume relies on. A skipped update's
metrics say what was not finite: the likelihood or the KL (of how many images),
or only the gradient.
"""

import functools

import tensorflow as tf

from vnca_tf.configs import Preset
from vnca_tf.training import microbatches


class TrainingStep:
    """The step of ``state`` (training.state.TrainingState) for ``preset``
    under ``strategy``: ``local_batch`` images a replica, in ``parts``
    microbatches, the loss and gradients compiled with XLA if ``jit_compile``."""

    def __init__(
        self, state, preset: Preset, strategy, local_batch: int, parts: int, jit_compile: bool
    ):
        if parts < 1 or local_batch % parts:
            raise ValueError(
                f"microbatches must divide the {local_batch} images of each replica, got {parts}."
            )
        self.state = state
        self.config = preset.train
        self.latent_size = preset.model.latent_size
        self.strategy = strategy
        self.local_batch = local_batch
        self.parts = parts
        self.loss_and_gradients = tf.function(self._loss_and_gradients, jit_compile=jit_compile)
        self._step = tf.function(self._distributed_step)

    def __call__(self, batch) -> dict:
        """Runs one step on a distributed batch; returns its metrics (tensors)."""
        return self._step(batch)

    def _seeds(self):
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.config.seed, 0]), self.state.step
        )
        return tf.unstack(tf.random.experimental.stateless_split(step_seed, 4))

    def _loss_and_gradients(
        self,
        part,
        images,
        noise,
        start_cells=None,
        use_start=None,
        *,
        decode_seed,
        num_steps,
        first_row,
    ):
        """Loss sums and gradients (of the loss summed over ``images``, divided
        by the global batch size) of part ``part`` of a replica's images (see
        microbatches.accumulate), which starts at row ``first_row`` + part *
        its size of the global batch; and the grown cells."""
        state = self.state
        rows = tf.stack([first_row + part * tf.shape(images)[0], self.config.batch_size])
        with tf.GradientTape() as tape:
            terms = state.model.loss_terms(
                images,
                noise,
                self.config.beta,
                start_cells,
                use_start,
                num_steps,
                decode_seed,
                rows,
            )
            scale = state.loss_scale.scale
            scaled = tf.reduce_sum(terms["loss"]) / self.config.batch_size * scale
        variables = state.model.trainable_variables
        gradients = [g / scale for g in tape.gradient(scaled, variables)]
        sums = tf.stack(
            [tf.reduce_sum(terms[k]) for k in ("loss", "reconstruction", "kl")]
            + [_count_nonfinite(terms[k]) for k in ("reconstruction", "kl")]
        )
        return gradients, sums, terms["final_cells"]

    def _replica_step(self, images, seeds):
        """One replica's share: its images (mixed with pooled cells), noise and
        rows of the global batch; loss and gradients, all-reduced."""
        noise_seed, decode_seed, damage_seed, _ = seeds
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        first_row = replica * self.local_batch
        noise = tf.random.stateless_normal([self.config.batch_size, self.latent_size], noise_seed)
        inputs = [images, noise[first_row : first_row + self.local_batch]]
        if self.state.pool is not None:
            images, start_cells, use_start = self.state.pool.mix(images, replica, damage_seed)
            inputs = [images, inputs[1], start_cells, use_start]
        loss_and_gradients = functools.partial(
            self.loss_and_gradients,
            decode_seed=decode_seed,
            first_row=first_row,
            num_steps=self.state.model.draw_num_steps(decode_seed),
        )
        gradients, sums, final = microbatches.accumulate(loss_and_gradients, inputs, self.parts)
        gradients, sums = context.all_reduce(tf.distribute.ReduceOp.SUM, (gradients, sums))
        # As int32: the gather of the pool's update has no uint8 kernel on CPUs.
        return gradients, sums, tf.cast(images, tf.int32), final

    def _distributed_step(self, batch):
        state, strategy = self.state, self.strategy
        seeds = self._seeds()
        gradients, sums, images, final = strategy.run(self._replica_step, args=(batch, seeds))
        gradients = [strategy.experimental_local_results(g)[0] for g in gradients]
        sums = strategy.experimental_local_results(sums)[0]
        norm = tf.linalg.global_norm(gradients)
        finite = tf.math.is_finite(norm) & tf.reduce_all(tf.math.is_finite(sums[:3]))
        # A float16 overflow only lowers the loss scale; it is no divergence.
        overflow = state.loss_scale.is_overflow(finite)

        def update():
            clipped, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm, use_norm=norm)
            state.optimizer.apply(clipped, state.model.trainable_variables)
            if state.pool is not None:
                state.pool.update(
                    strategy.gather(images, axis=0), strategy.gather(final, axis=0), seeds[3]
                )
            state.nonfinite_in_a_row.assign(0)
            return tf.constant(True)

        def skip():
            state.nonfinite_total.assign_add(1)
            state.nonfinite_in_a_row.assign_add(tf.where(overflow, tf.constant(0, tf.int64), 1))
            return tf.constant(False)

        tf.cond(finite, update, skip)
        state.loss_scale.update(finite)
        state.step.assign_add(1)
        batch_size = self.config.batch_size
        return {
            "loss": sums[0] / batch_size,
            "reconstruction": sums[1] / batch_size,
            "kl": sums[2] / batch_size,
            "gradient_norm": norm,
            "loss_scale": state.loss_scale.scale,
            "skipped": tf.cast(~finite, tf.float32),
            "float16_overflow": tf.cast(overflow, tf.float32),
            # What was not finite in a skipped update (all 0 in a taken one).
            "nonfinite_likelihood": sums[3],  # Images with a non-finite log p(x|z).
            "nonfinite_kl": sums[4],  # Images with a non-finite KL.
            "nonfinite_gradient": tf.cast(~tf.math.is_finite(norm), tf.float32),
        }


def _count_nonfinite(values):
    """The number of non-finite entries of ``values``, as a float (it is summed
    with the loss sums over microbatches and replicas)."""
    return tf.reduce_sum(tf.cast(~tf.math.is_finite(values), tf.float32))
