"""The distributed training loop: strategy, steps, pool, checkpoints, summaries.

One ``Trainer`` trains a VNCA preset under a tf.distribute strategy with a custom
loop: Adam as PyTorch computes it (the authors' optimizer), the gradient's global
norm clipped (after the all-reduce, so the same on any number of replicas), beta
on the KL, one z sample per image, the loss averaged over the global batch.
Every random number of step t comes from a stateless seed derived from (config
seed, t), and the data pipeline skips the t batches already seen, so a restored
run continues exactly where it stopped.
"""

import functools
import math
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from vnca_tf import configs, data, faults, microbatches, run_folder, summaries
from vnca_tf.configs import Preset
from vnca_tf.console import Console
from vnca_tf.distribution import MIRRORED, any_worker, is_chief
from vnca_tf.loss_scale import DynamicLossScale
from vnca_tf.model import build_model
from vnca_tf.optimizers import TorchAdam, learning_rate_at
from vnca_tf.pool import Pool



class NonFiniteError(RuntimeError):
    """Too many non-finite updates in a row."""


class Stopped(Exception):
    """Training stopped on request after ``step``, with ``checkpoint`` written."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"stopped after step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


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
        if jit_compile is None:  # XLA's CPU convolutions are many times slower.
            jit_compile = bool(tf.config.list_logical_devices("GPU"))
        self.jit_compile = jit_compile
        self._dataset = dataset
        self._validation_dataset = validation_dataset
        self._validation_images = None
        self.data_dir, self.data_source = data_dir, data_source
        self._clock = time.perf_counter()
        self._last_save = time.monotonic()
        self._prepared = None  # (start step, training batches), from prepare().
        self._restored = None  # The step restore() reached, until prepare() takes it.
        self.resumed_from = None  # The checkpoint the run resumed from.
        self.console = Console(self.config.num_steps, enabled=self.chief)
        self.current_step = 0  # The last step done (for a stop's acknowledgement).

        model_config = preset.model
        keras.utils.set_random_seed(self.config.seed)  # Seeded initial weights.
        with self.strategy.scope():
            self.model = build_model(model_config, precision, recompute)
            self.optimizer = TorchAdam(self.config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step", **MIRRORED)
            self.nonfinite_total = tf.Variable(0, dtype=tf.int64, **MIRRORED)
            self.nonfinite_in_a_row = tf.Variable(0, dtype=tf.int64, **MIRRORED)
            self.best_validation = tf.Variable(math.inf, dtype=tf.float32, **MIRRORED)
            # Wall-clock seconds of training up to the checkpoint (over resumes).
            self.train_seconds = tf.Variable(0.0, dtype=tf.float64, **MIRRORED)
            self.loss_scale = DynamicLossScale(precision == "mixed_float16")
            self.pool = None
            if self.config.pool_size:
                if self.model.pool_cell_shape is None:
                    raise ValueError("Pool and damage training is for non-doubling VNCAs; "
                                     "set pool_size=0 for this model.")
                self.pool = Pool(self.config.pool_size, model_config.image_shape,
                                 self.model.pool_cell_shape, self.config.damage_size,
                                 self.local_batch, self.num_replicas,
                                 self.config.pool_damaged)
        trackables = {"model": self.model, "optimizer": self.optimizer,
                      run_folder.STEP: self.step, run_folder.TRAIN_SECONDS: self.train_seconds,
                      "nonfinite_total": self.nonfinite_total,
                      "nonfinite_in_a_row": self.nonfinite_in_a_row,
                      "best_validation": self.best_validation, "loss_scale": self.loss_scale}
        if self.pool is not None:
            trackables["pool"] = self.pool
        self.checkpoint = tf.train.Checkpoint(**trackables)
        # Non-chief workers save too (saving can involve collectives), elsewhere.
        resolver = self.strategy.cluster_resolver if not self.chief else None
        worker = resolver and f"{resolver.task_type}_{resolver.task_id}"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, run_folder.checkpoint_folder(model_dir, "latest", worker),
            max_to_keep=self.config.keep_checkpoints)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, run_folder.checkpoint_folder(model_dir, "best", worker),
            max_to_keep=1)
        self._train_step = tf.function(self._distributed_step)
        self._loss_and_gradients = tf.function(self._loss_and_gradients_fn,
                                               jit_compile=jit_compile)

    # ------------------------------------------------------------ checkpoints

    def restore(self) -> int:
        """Restores the newest intact checkpoint, if any (newer ones that do not
        read are skipped with a warning), else reads the model's weights from
        ``init_from`` if set (a fine-tune); returns the step reached (which
        ``prepare`` then starts from)."""
        self.resumed_from = self.initialized_from = None
        if self.manager.checkpoints:
            self.resumed_from = run_folder.read_newest_intact(
                lambda path: self.checkpoint.restore(path).assert_existing_objects_matched(),
                self.manager.checkpoints)
        elif self.config.init_from:
            self.initialized_from = run_folder.read_initial_weights(self.model,
                                                                    self.config.init_from)
        self._restored = int(self.step.numpy())
        if self.resumed_from:
            self.console.event(f"Resumed from {self.resumed_from} at step {self._restored}")
        if self.initialized_from:
            self.console.event(f"Started from the weights in {self.initialized_from}")
        return self._restored

    def _count_time(self):
        """Adds the wall-clock time since the last call to train_seconds."""
        now = time.perf_counter()
        self.train_seconds.assign_add(now - self._clock)
        self._clock = now

    def save(self, manager=None) -> str:
        """Writes a checkpoint of the current step (latest, or ``manager``'s);
        a fault of the disk is a FaultError, and leaves no temporary files."""
        manager = manager or self.manager
        self._count_time()
        step = int(self.step.numpy())
        try:
            with faults.doing(f"Writing the checkpoint of step {step} to {manager.directory}"):
                path = manager.save(checkpoint_number=step)
        except faults.FaultError:
            run_folder.remove_temporary_checkpoints(manager.directory)
            raise
        if manager is self.manager:
            self._last_save = time.monotonic()
        return path

    def last_checkpoint(self) -> Optional[str]:
        """The newest complete checkpoint of the run (None before the first)."""
        return self.manager.latest_checkpoint

    # ------------------------------------------------------------ data

    def _load(self, split: str):
        """A split of the preset's dataset at the model's image size."""
        return data.load(self.preset.dataset, split, data_dir=self.data_dir,
                         source=self.data_source, image_size=self.preset.model.image_shape[0])

    def _batches(self, start_step: int):
        """The training batches from ``start_step`` on, distributed."""
        dataset = self._dataset
        if dataset is None:
            split = data.get_spec(self.preset.dataset).paper_train_split
            began = time.perf_counter()
            self.console.event(f"Loading {self.preset.dataset} ({split}) ...")
            with self.console.working(f"loading {self.preset.dataset} ({split})"):
                dataset = self._load(split)
                count = int(dataset.cardinality())
            self.console.event(f"Loaded {count:,} training images in "
                               f"{time.perf_counter() - began:.1f} s")
        dataset = data.shuffled(dataset, self.config.seed, batch_size=self.config.batch_size,
                                drop_remainder=True, skip_batches=start_step)
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    def _validation_batches(self):
        """The first validation_batches batches of the validation split, loaded once."""
        if self._validation_images is None:
            dataset = self._validation_dataset
            if dataset is None:
                dataset = self._load(data.get_spec(self.preset.dataset).validation_split)
            count = self.config.validation_batches * self.config.batch_size
            self._validation_images = next(iter(dataset.batch(count)))
        return tf.split(self._validation_images,
                        _split_sizes(len(self._validation_images), self.config.batch_size))

    # ------------------------------------------------------------ the step

    def _step_seeds(self):
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.config.seed, 0]), self.step)
        return tf.unstack(tf.random.experimental.stateless_split(step_seed, 4))

    def _loss_and_gradients_fn(self, part, images, noise, start_cells=None, use_start=None,
                               *, decode_seed, num_steps, first_row):
        """Loss sums and gradients (of the loss summed over ``images``, divided
        by the global batch size) of part ``part`` of a replica's images (see
        microbatches.accumulate), which starts at row ``first_row`` + part *
        its size of the global batch; and the grown cells."""
        rows = tf.stack([first_row + part * tf.shape(images)[0], self.config.batch_size])
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(images, noise, self.config.beta, start_cells,
                                          use_start, num_steps, decode_seed, rows)
            scale = self.loss_scale.scale
            scaled = tf.reduce_sum(terms["loss"]) / self.config.batch_size * scale
        variables = self.model.trainable_variables
        gradients = [g / scale for g in tape.gradient(scaled, variables)]
        sums = tf.stack([tf.reduce_sum(terms[k]) for k in ("loss", "reconstruction", "kl")])
        return gradients, sums, terms["final_cells"]

    def _replica_step(self, images, seeds):
        """One replica's share: its images (mixed with pooled cells), noise and
        rows of the global batch; loss and gradients, all-reduced."""
        noise_seed, decode_seed, damage_seed, _ = seeds
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        first_row = replica * self.local_batch
        noise = tf.random.stateless_normal(
            [self.config.batch_size, self.preset.model.latent_size], noise_seed)
        inputs = [images, noise[first_row:first_row + self.local_batch]]
        if self.pool is not None:
            images, start_cells, use_start = self.pool.mix(images, replica, damage_seed)
            inputs = [images, inputs[1], start_cells, use_start]
        loss_and_gradients = functools.partial(
            self._loss_and_gradients, decode_seed=decode_seed, first_row=first_row,
            num_steps=self.model.draw_num_steps(decode_seed))
        gradients, sums, final = microbatches.accumulate(loss_and_gradients, inputs,
                                                         self.microbatches)
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
                self.pool.update(self.strategy.gather(images, axis=0),
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
        return self.model.negative_elbo(images, seed=seed)["loss"]

    def prepare(self) -> int:
        """Restores the newest intact checkpoint and opens the training and
        validation data (a DataError comes before anything is written);
        returns the step to start from. ``train`` calls it if need be."""
        if self._prepared is None:
            start = self._restored if self._restored is not None else self.restore()
            self._restored = None
            if self.chief:
                for which in configs.CHECKPOINTS:
                    run_folder.remove_temporary_checkpoints(
                        run_folder.checkpoint_folder(self.model_dir, which))
            self._prepared = (start, self._batches(start))
            self._validation_batches()
        return self._prepared[0]

    def train(self, num_steps: Optional[int] = None, progress: bool = True,
              stop=None) -> dict:
        """Trains up to ``num_steps`` (default: the config's), resuming from the
        newest intact checkpoint in model_dir; returns the last step's metrics.
        ``progress``: show the progress line and the run's events on stdout.
        ``stop``: a stopping.Stopper (or anything with a ``requested`` event):
        once it is set, the step in flight finishes, a checkpoint of it is
        written, and Stopped is raised.

        Raises:
          Stopped: after a stop request, with the checkpoint written.
          NonFiniteError: max_nonfinite non-finite updates in a row.
          faults.FaultError: a checkpoint or summary could not be written.
        """
        num_steps = num_steps or self.config.num_steps
        self.console.enabled = progress and self.chief
        self.console.total = num_steps
        self.prepare()
        start, batches = self._prepared
        self._prepared = None  # The next call resumes afresh.
        self._clock, self._last_save = time.perf_counter(), time.monotonic()
        console = self.console
        with faults.doing(f"Opening the TensorBoard logs in {self.model_dir}"):
            writer = summaries.Writer(self.model_dir, self.chief)
        self.current_step = start
        if stop is not None and hasattr(stop, "graceful"):
            stop.graceful(lambda: f"stopping after step {self.current_step + 1}, then "
                                  "writing a checkpoint of it")
        metrics, window, rate, last_scalars = {}, [0.0, 0], None, -math.inf
        pictured = False  # Images at the first checkpoint, then every image_every.
        for step in range(start + 1, num_steps + 1):
            self.current_step = step - 1
            wanted = learning_rate_at(step, self.config.learning_rate,
                                      self.config.learning_rate_drops)
            if wanted != rate:  # The first step (a resume too) and each drop.
                rate = self.optimizer.learning_rate = wanted
            if step == start + 1:
                console.event(f"Building the training step ({self._building()}) ...")
            began = time.perf_counter()
            with console.working(f"step {step:,}" if step > start + 1
                                 else "building and running the first step"):
                metrics = {k: float(v) for k, v in self._train_step(next(batches)).items()}
            seconds = time.perf_counter() - began
            self.current_step = step
            console.step_done(seconds)
            window = [window[0] + seconds, window[1] + 1]
            if step == start + 1:
                console.event(f"step {step:,} took {seconds:.1f} s (building the step "
                              "included)")
            elif step == start + 2:
                self._warn_if_long(console, step, num_steps)
            if int(self.nonfinite_in_a_row.numpy()) >= self.config.max_nonfinite:
                console.close()
                raise NonFiniteError(
                    f"{int(self.nonfinite_in_a_row.numpy())} non-finite updates in a row "
                    f"(at step {step}); stopping. The last good checkpoint "
                    f"{self.manager.latest_checkpoint} is intact and no non-finite value "
                    "was saved. Try a lower learning rate or check the data.")
            last = step == num_steps
            console.progress(step, f"loss {metrics['loss']:.2f} "
                             f"({summaries.describe_loss(metrics['loss'], self.preset.model)})",
                             force=last)
            by_time = time.monotonic() - self._last_save >= 60 * self.config.checkpoint_minutes
            by_time, stopping = any_worker(self.strategy, by_time,
                                           stop is not None and stop.requested.is_set())
            checkpoint = step % self.config.checkpoint_every == 0 or last or by_time or stopping
            scalars_due = (step % self.config.log_every == 0 or last or step == start + 1
                           or time.monotonic() - last_scalars >= 60 * self.config.log_minutes)
            with faults.doing(f"Writing the TensorBoard logs in {self.model_dir}"):
                if scalars_due:
                    metrics["steps_per_s"] = window[1] / window[0]
                    window = [0.0, 0]
                    writer.scalars(step, metrics, self.preset.model, self.optimizer,
                                   int(self.nonfinite_total.numpy()),
                                   None if self.pool is None else int(self.pool.size.numpy()))
                    writer.flush()
                    last_scalars = time.monotonic()
                if (step % self.config.image_every == 0 or last
                        or (checkpoint and not pictured)) and not stopping:
                    writer.images(step, self.model, self._validation_batches()[0],
                                  self.config.seed)
                    writer.flush()
                    pictured = True
                    console.event(f"step {step}: images for TensorBoard in "
                                  f"{os.path.join(self.model_dir, 'train')}")
            if (step % self.config.validation_every == 0 or last) and not stopping:
                console.event(self._validate(step, writer))
            if checkpoint:
                path = self.save()
                reason = f" ({self.config.checkpoint_minutes:g} minutes since the last)"
                console.event(f"step {step}: checkpoint {path}"
                              f"{reason if by_time and not stopping else ''}")
            if stopping:
                console.close()
                writer.flush()
                raise Stopped(step, path)
        console.close()
        writer.flush()
        return metrics

    def _building(self) -> str:
        """How the step is being built, in words."""
        return "tracing the graph, compiling it with XLA" if self.jit_compile else (
            "tracing the graph")

    def _warn_if_long(self, console, step: int, num_steps: int) -> None:
        """Says so when the rest of the run takes more than a day here."""
        if console.steps_per_second is None:
            return
        note = long_run_note(1.0 / console.steps_per_second, num_steps - step,
                             len(tf.config.list_logical_devices("GPU")), self.preset.model)
        if note:
            console.event(note)

    def _validate(self, step, writer) -> str:
        """Logs the validation loss, saves a new best to the best checkpoint;
        returns a line saying so."""
        loss = self.validation_loss()
        writer.validation_scalars(step, loss, self.preset.model)
        line = (f"step {step}: validation loss {loss:.4f} "
                f"({summaries.describe_loss(loss, self.preset.model)})")
        if loss < float(self.best_validation.numpy()):
            self.best_validation.assign(loss)
            line += f", the best so far: saved as {self.save(self.best_manager)}"
        return line


def long_run_note(seconds_per_step: float, steps_left: int, gpus: int, model) -> Optional[str]:
    """A line for a run whose remaining steps take more than a day on the
    devices found, naming a preset made for a CPU; None for a shorter one."""
    remaining = seconds_per_step * steps_left
    if remaining <= 86_400:
        return None
    devices = f"{gpus} GPU(s)" if gpus else "the CPU (no GPU found)"
    return (f"Note: at {seconds_per_step:.1f} s a step on {devices}, the {steps_left:,} steps "
            f"left take about {remaining / 86_400:.0f} days here. On a machine like this, "
            f"try --preset={configs.small_preset_for(model)} (made for a CPU).")


def _split_sizes(total: int, size: int):
    """Sizes of consecutive batches of at most ``size`` covering ``total``."""
    return [size] * (total // size) + ([total % size] if total % size else [])
