"""The distributed training loop: strategy, steps, pool, checkpoints, summaries.

One ``Trainer`` trains a VNCA preset under a tf.distribute strategy with a custom
loop: Adam as PyTorch computes it (the authors' optimizer), the gradient's global
norm clipped (after the all-reduce, so the same on any number of replicas), beta
on the KL, one z sample per image, the loss averaged over the global batch.
Every random number of step t comes from a stateless seed derived from (config
seed, t), and the data pipeline skips the t batches already seen, so a restored
run continues exactly where it stopped.
"""

import dataclasses
import json
import math
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from vnca_tf import data, summaries
from vnca_tf.configs import Preset
from vnca_tf.model import build_model
from vnca_tf.nca import damage_square
from vnca_tf.optimizers import TorchAdam
from vnca_tf.pool import Pool

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
_MIRRORED = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class NonFiniteError(RuntimeError):
    """Too many non-finite updates in a row."""


class DynamicLossScale(tf.Module):
    """Loss scaling for float16 (as Keras' LossScaleOptimizer does it): the
    gradients of loss * scale are divided by scale; an overflow halves the scale
    (down to 1) and the update is skipped; ``growth_interval`` finite steps in a
    row double it. Disabled, the scale stays 1."""

    def __init__(self, enabled: bool, initial: float = 2.0 ** 15,
                 growth_interval: int = 2000):
        super().__init__(name="loss_scale")
        self.enabled = enabled
        self.growth_interval = growth_interval
        self.scale = tf.Variable(initial if enabled else 1.0, dtype=tf.float32, **_MIRRORED)
        self.finite_steps = tf.Variable(0, dtype=tf.int64, **_MIRRORED)

    def is_overflow(self, finite):
        """Whether a step's non-finite gradients are the scale's doing."""
        return tf.logical_not(finite) & (self.scale > 1.0) & self.enabled

    def update(self, finite):
        """Adjusts the scale after a step (cross-replica context)."""
        if not self.enabled:
            return
        grow = finite & (self.finite_steps + 1 >= self.growth_interval)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                                   tf.maximum(self.scale / 2.0, 1.0)))
        self.finite_steps.assign(tf.where(finite & ~grow, self.finite_steps + 1, 0))


def choose_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy for this machine: MultiWorkerMirrored when TF_CONFIG names
    a cluster of several tasks, Mirrored on several local GPUs, else the default.
    Create it before any other TensorFlow work (multi-worker requires that)."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}.")
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
        if sum(len(tasks) for kind, tasks in cluster.items() if kind != "ps") > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The tf.distribute name a user knows the strategy by."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this task writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


class Trainer:
    """Trains ``preset`` in ``model_dir`` (checkpoints, TensorBoard logs, config).

    ``jit_compile``: compile the forward and backward pass with XLA (default:
    on GPUs only; on CPUs XLA's convolutions are far slower than oneDNN's).
    ``precision``: "float32", "mixed_bfloat16" or "mixed_float16" (with dynamic
    loss scaling, for GPUs without bfloat16); ``recompute``: trade time for
    memory in backprop (see model.build_model); ``microbatches``: split each
    replica's batch into this many parts, run forward and backward on one at a
    time and sum their gradients (the same update, for a fraction of the
    activation memory).
    """

    def __init__(self, preset: Preset, model_dir: str, strategy=None,
                 data_dir: Optional[str] = None, data_source: str = "auto",
                 jit_compile: Optional[bool] = None, precision: str = "float32",
                 recompute: bool = False, microbatches: int = 1, dataset=None,
                 validation_dataset=None):
        self.preset = preset
        self.config = preset.train
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        if self.config.batch_size % self.num_replicas:
            raise ValueError(f"batch_size {self.config.batch_size} must be divisible by "
                             f"the {self.num_replicas} replicas.")
        self.local_batch = self.config.batch_size // self.num_replicas
        if microbatches < 1 or self.local_batch % microbatches:
            raise ValueError(f"microbatches must divide the {self.local_batch} images of "
                             f"each replica, got {microbatches}.")
        self.microbatches = microbatches
        self.draws_steps = (preset.model.architecture == "vnca"
                            and preset.model.decoder == "non_doubling")
        if self.config.pool_size and not self.draws_steps:
            raise ValueError("Pool and damage training is for non-doubling VNCAs; set "
                             "pool_size=0 for this model.")
        if self.config.pool_size and self.local_batch < 4:
            raise ValueError("Pool training needs at least 4 images per replica, got "
                             f"{self.local_batch}.")
        if jit_compile is None:  # XLA's CPU convolutions are many times slower.
            jit_compile = bool(tf.config.list_logical_devices("GPU"))
        self.jit_compile = jit_compile
        self._dataset = dataset
        self._validation_dataset = validation_dataset
        self._validation_images = None
        self.data_dir, self.data_source = data_dir, data_source
        self._clock = time.perf_counter()

        model_config = preset.model
        keras.utils.set_random_seed(self.config.seed)  # Seeded initial weights.
        with self.strategy.scope():
            self.model = build_model(model_config, precision, recompute)
            self.optimizer = TorchAdam(self.config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step", **_MIRRORED)
            self.nonfinite_total = tf.Variable(0, dtype=tf.int64, **_MIRRORED)
            self.nonfinite_in_a_row = tf.Variable(0, dtype=tf.int64, **_MIRRORED)
            self.best_validation = tf.Variable(math.inf, dtype=tf.float32, **_MIRRORED)
            # Wall-clock seconds of training up to the checkpoint (over resumes).
            self.train_seconds = tf.Variable(0.0, dtype=tf.float64, **_MIRRORED)
            self.loss_scale = DynamicLossScale(precision == "mixed_float16")
            self.pool = None
            if self.config.pool_size:
                self.pool = Pool(self.config.pool_size, model_config.image_shape,
                                 tuple(model_config.image_shape[:2]) + (model_config.latent_size,))
        trackables = dict(model=self.model, optimizer=self.optimizer, step=self.step,
                          nonfinite_total=self.nonfinite_total,
                          nonfinite_in_a_row=self.nonfinite_in_a_row,
                          best_validation=self.best_validation, loss_scale=self.loss_scale,
                          train_seconds=self.train_seconds)
        if self.pool is not None:
            trackables["pool"] = self.pool
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir("checkpoints"),
            max_to_keep=self.config.keep_checkpoints)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir("best"), max_to_keep=1)
        self._train_step = tf.function(self._distributed_step)
        self._loss_and_gradients = tf.function(self._loss_and_gradients_fn,
                                               jit_compile=jit_compile)

    # ------------------------------------------------------------ checkpoints

    def _checkpoint_dir(self, name):
        if self.chief:
            return os.path.join(self.model_dir, name)
        # Non-chief workers save too (saving can involve collectives), elsewhere.
        resolver = self.strategy.cluster_resolver
        return os.path.join(self.model_dir, "workers", f"{resolver.task_type}_"
                            f"{resolver.task_id}", name)

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the step reached."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.step.numpy())

    def _count_time(self):
        """Adds the wall-clock time since the last call to train_seconds."""
        now = time.perf_counter()
        self.train_seconds.assign_add(now - self._clock)
        self._clock = now

    def save(self, manager=None) -> str:
        self._count_time()
        return (manager or self.manager).save(checkpoint_number=int(self.step.numpy()))

    # ------------------------------------------------------------ data

    def _load(self, split: str):
        """A split of the preset's dataset at the model's image size."""
        return data.load(self.preset.dataset, split, data_dir=self.data_dir,
                         source=self.data_source, image_size=self.preset.model.image_shape[0])

    def _batches(self, start_step: int):
        """The training batches from ``start_step`` on, distributed."""
        dataset = self._dataset
        if dataset is None:
            dataset = self._load(data.get_spec(self.preset.dataset).paper_train_split)
        dataset = data.shuffled(dataset, self.config.seed, batch_size=self.config.batch_size,
                                drop_remainder=True, skip_batches=start_step)
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    def _validation_batches(self):
        """The first eval_batches batches of the monitored split, loaded once."""
        if self._validation_images is None:
            dataset = self._validation_dataset
            if dataset is None:
                dataset = self._load(data.get_spec(self.preset.dataset).monitor_split)
            count = self.config.eval_batches * self.config.batch_size
            self._validation_images = next(iter(dataset.batch(count)))
        return tf.split(self._validation_images,
                        _split_sizes(len(self._validation_images), self.config.batch_size))

    # ------------------------------------------------------------ the step

    def _step_seeds(self):
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.config.seed, 0]), self.step)
        return tf.unstack(tf.random.experimental.stateless_split(step_seed, 4))

    def _loss_and_gradients_fn(self, images, noise, decode_seed, num_steps, first_row,
                               pool_cells, from_pool):
        """Loss terms and gradients of some of a replica's images (summed over
        them, divided by the global batch size), which are rows ``first_row``...
        of the global batch. Where ``from_pool`` is true, an image's cells start
        from ``pool_cells`` instead of its latent's seed."""
        model = self.model
        rows = tf.stack([first_row, self.config.batch_size])
        with tf.GradientTape() as tape:
            float_images = tf.cast(images, tf.float32)
            posterior = model._posterior(float_images)
            z = posterior.mean() + posterior.stddev() * noise
            if pool_cells is None:
                final = model.decode_cells(z, decode_seed, num_steps, rows=rows)
            else:
                cells = tf.where(from_pool[:, None, None, None],
                                 tf.stop_gradient(pool_cells), model.decoder.seed(z))
                final = model.grow(cells, decode_seed, num_steps, rows=rows)
            terms = model.negative_elbo(float_images, posterior, final, self.config.beta)
            scale = self.loss_scale.scale
            scaled = tf.reduce_sum(terms["loss"]) / self.config.batch_size * scale
        gradients = [g / scale for g in tape.gradient(scaled, model.trainable_variables)]
        sums = tf.stack([tf.reduce_sum(terms[k]) for k in ("loss", "reconstruction", "kl")])
        return gradients, sums, final

    def _accumulated_loss_and_gradients(self, images, noise, decode_seed, num_steps,
                                        first_row, pool_cells, from_pool):
        """``_loss_and_gradients`` over the replica's images in ``microbatches``
        parts, one after the other (so that only one part's activations live at a
        time), with gradients and sums added up and the final cells concatenated."""
        parts = self.microbatches
        if parts == 1:  # The default: no loop, no accumulators on the step's path.
            return self._loss_and_gradients(images, noise, decode_seed, num_steps,
                                            first_row, pool_cells, from_pool)
        size = self.local_batch // parts
        inputs = [images, noise] + ([] if pool_cells is None else [pool_cells, from_pool])
        inputs = [tf.reshape(t, [parts, size, *t.shape[1:]]) for t in inputs]

        def body(i, gradients, sums, finals):
            part_images, part_noise, *pool_part = [t[i] for t in inputs]
            new_gradients, new_sums, final = self._loss_and_gradients(
                part_images, part_noise, decode_seed, num_steps, first_row + i * size,
                *(pool_part or [None, None]))
            return (i + 1, [g + n for g, n in zip(gradients, new_gradients)],
                    sums + new_sums, finals.write(i, final))

        variables = self.model.trainable_variables
        finals = tf.TensorArray(tf.float32, size=parts)
        _, gradients, sums, finals = tf.while_loop(
            lambda i, *_: i < parts, body,
            (tf.constant(0), [tf.zeros_like(v) for v in variables], tf.zeros([3]), finals),
            parallel_iterations=1)
        final = finals.stack()
        return gradients, sums, tf.reshape(final, [self.local_batch, *final.shape[2:]])

    def _replica_step(self, images, seeds):
        """One replica's share: pooled inputs, loss, gradients; all-reduced."""
        noise_seed, decode_seed, damage_seed, _ = seeds
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        first_row = replica * self.local_batch
        noise = tf.random.stateless_normal(
            [self.config.batch_size, self.preset.model.latent_size], noise_seed)
        noise = noise[first_row:first_row + self.local_batch]
        num_steps = None
        if self.draws_steps:
            num_steps = self.model.decoder.draw_num_steps(decode_seed)
        pool_cells, from_pool = None, None
        if self.pool is not None:
            half = self.local_batch // 2
            use_pool = self.pool.can_serve(half * self.num_replicas)
            pool_images, pool_cells = self.pool.head(replica * half, half)
            quarter = self.local_batch // 4
            # The second half of the batch continues from pooled cells, a quarter
            # of the batch damaged; the first half grows from its seeds.
            pool_cells = tf.concat([
                tf.zeros_like(pool_cells),
                damage_square(pool_cells[:quarter], self.config.damage_size,
                              tf.random.experimental.stateless_fold_in(damage_seed, replica)),
                pool_cells[quarter:]], 0)
            from_pool = use_pool & (tf.range(self.local_batch) >= half)
            images = tf.where(use_pool, tf.concat([images[:half], pool_images], 0), images)
        gradients, sums, final = self._accumulated_loss_and_gradients(
            images, noise, decode_seed, num_steps, first_row, pool_cells, from_pool)
        gradients, sums = context.all_reduce(tf.distribute.ReduceOp.SUM, (gradients, sums))
        return gradients, sums, images, final

    def _distributed_step(self, batch):
        seeds = self._step_seeds()
        gradients, sums, images, final = self.strategy.run(
            self._replica_step, args=(batch, seeds))
        gradients = [self.strategy.experimental_local_results(g)[0] for g in gradients]
        sums = self.strategy.experimental_local_results(sums)[0]
        norm = tf.linalg.global_norm(gradients)
        finite = tf.math.is_finite(norm) & tf.reduce_all(tf.math.is_finite(sums))

        def update():
            clipped, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm,
                                                use_norm=norm)
            self.optimizer.apply(clipped, self.model.trainable_variables)
            if self.pool is not None:
                half = self.local_batch // 2 * self.num_replicas
                taken = tf.where(self.pool.can_serve(half), half, 0)
                self.pool.refill(taken, self.strategy.gather(images, axis=0),
                                 self.strategy.gather(final, axis=0), seeds[3])
            self.nonfinite_in_a_row.assign(0)
            return tf.constant(True)

        def skip():
            self.nonfinite_total.assign_add(1)
            # A float16 overflow only lowers the loss scale; it is no divergence.
            self.nonfinite_in_a_row.assign_add(
                tf.where(self.loss_scale.is_overflow(finite), tf.constant(0, tf.int64), 1))
            return tf.constant(False)

        tf.cond(finite, update, skip)
        self.loss_scale.update(finite)
        self.step.assign_add(1)
        return {"loss": sums[0] / self.config.batch_size,
                "reconstruction": sums[1] / self.config.batch_size,
                "kl": sums[2] / self.config.batch_size,
                "gradient_norm": norm, "loss_scale": self.loss_scale.scale}

    # ------------------------------------------------------------ the loop

    def validation_loss(self) -> float:
        """The mean negative ELBO (beta = 1) over the validation batches."""
        total, count = 0.0, 0
        for index, images in enumerate(self._validation_batches()):
            terms = self._validation_elbo(images, tf.constant([self.config.seed, index]))
            total += float(tf.reduce_sum(terms))
            count += int(images.shape[0])
        return total / count

    @tf.function
    def _validation_elbo(self, images, seed):
        return self.model.elbo(images, seed=seed)["loss"]

    def train(self, num_steps: Optional[int] = None, progress: bool = True) -> dict:
        """Trains up to ``num_steps`` (default: the config's), resuming from the
        latest checkpoint in model_dir; returns the last step's metrics."""
        num_steps = num_steps or self.config.num_steps
        start = self.restore()
        self._clock = time.perf_counter()
        writer = summaries.Writer(self.model_dir, self.chief)
        batches = self._batches(start)
        bar = keras.utils.Progbar(num_steps, stateful_metrics=[
            "loss", summaries.likelihood_unit(self.preset.model), "steps/s"],
            verbose=1 if progress and self.chief else 0)
        bar.update(start)
        metrics, last_time, last_step = {}, time.perf_counter(), start
        for step in range(start + 1, num_steps + 1):
            metrics = {k: float(v) for k, v in self._train_step(next(batches)).items()}
            if int(self.nonfinite_in_a_row.numpy()) >= self.config.max_nonfinite:
                raise NonFiniteError(
                    f"{int(self.nonfinite_in_a_row.numpy())} non-finite updates in a row "
                    f"(at step {step}); stopping. The last good checkpoint "
                    f"{self.manager.latest_checkpoint} is intact and no non-finite value "
                    "was saved. Try a lower learning rate or check the data.")
            if step % self.config.log_every == 0 or step == num_steps:
                now = time.perf_counter()
                metrics["steps_per_s"] = (step - last_step) / (now - last_time)
                last_time, last_step = now, step
                writer.scalars(step, metrics, self.preset.model, self.optimizer,
                               int(self.nonfinite_total.numpy()),
                               None if self.pool is None else int(self.pool.size.numpy()))
                bar.update(step, [("loss", metrics["loss"]),
                                  (summaries.likelihood_unit(self.preset.model),
                                   summaries.in_likelihood_unit(-metrics["loss"],
                                                                self.preset.model)),
                                  ("steps/s", metrics["steps_per_s"])])
            if step % self.config.image_every == 0 or step == num_steps:
                writer.images(step, self.model, self._validation_batches()[0],
                              self.config.seed)
            if step % self.config.eval_every == 0 or step == num_steps:
                self._evaluate(step, writer)
            if step % self.config.checkpoint_every == 0 or step == num_steps:
                self.save()
        writer.flush()
        return metrics

    def _evaluate(self, step, writer):
        """Logs the validation loss; a new best is saved to the best checkpoint."""
        loss = self.validation_loss()
        writer.validation_scalars(step, loss, self.preset.model)
        if loss < float(self.best_validation.numpy()):
            self.best_validation.assign(loss)
            self.save(self.best_manager)


def _split_sizes(total: int, size: int):
    """Sizes of consecutive batches of at most ``size`` covering ``total``."""
    return [size] * (total // size) + ([total % size] if total % size else [])


def save_config(preset: Preset, model_dir: str, extra: dict) -> str:
    """Writes the resolved configuration as model_dir/config.json."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "config.json")
    with open(path, "w") as f:
        json.dump({**dataclasses.asdict(preset), **extra}, f, indent=2, default=str)
    return path

