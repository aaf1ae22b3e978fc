"""The training loop: timing, checkpoints and stops, around the state
(training.state), the step (training.step), the images (training.inputs) and
what the run shows (training.reporting).

One ``Trainer`` trains a preset in a run folder under a tf.distribute strategy.
It resumes from the newest intact checkpoint, says what it does as it does it
(loading, building the step, the first step's time, then progress with an
ETA), writes a checkpoint every checkpoint_every steps and every
checkpoint_minutes, and on a stop request finishes the step in flight, saves
it and raises Stopped.
"""

import time
from typing import Optional

import tensorflow as tf

from vnca_tf.common.console import Console
from vnca_tf.configs import Preset, RunConfig
from vnca_tf.training.distribution import any_worker, is_chief
from vnca_tf.training.inputs import TrainingInputs
from vnca_tf.training.reporting import Cadence, Reporting
from vnca_tf.training.state import TrainingState
from vnca_tf.training.step import TrainingStep


class NonFiniteError(RuntimeError):
    """Too many non-finite updates in a row."""


class Stopped(Exception):
    """Training stopped on request after ``step``, with ``checkpoint`` written."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"stopped after step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


class Trainer:
    """Trains ``preset`` in ``model_dir`` (checkpoints, TensorBoard logs) under
    ``strategy`` (default: the current one), executed as ``run`` says
    (configs.RunConfig: precision, XLA, recompute, microbatches, the data's
    source). ``dataset`` and ``validation_dataset`` replace the preset's data
    (tests)."""

    def __init__(
        self,
        preset: Preset,
        model_dir: str,
        strategy=None,
        run: Optional[RunConfig] = None,
        dataset=None,
        validation_dataset=None,
    ):
        self.preset, self.config, self.model_dir = preset, preset.train, model_dir
        run = run or RunConfig()
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        if self.config.batch_size % replicas:
            raise ValueError(
                f"batch_size {self.config.batch_size} must be divisible by the {replicas} replicas."
            )
        local_batch = self.config.batch_size // replicas
        resolver = self.strategy.cluster_resolver if not self.chief else None
        worker = resolver and f"{resolver.task_type}_{resolver.task_id}"
        self.state = TrainingState(preset, model_dir, self.strategy, run, local_batch, worker)
        # XLA's CPU convolutions are many times slower: on GPUs only, by default.
        self.jit_compile = {"on": True, "off": False}.get(
            run.jit_compile, bool(tf.config.list_logical_devices("GPU"))
        )
        self.step_function = TrainingStep(
            self.state, preset, self.strategy, local_batch, run.microbatches, self.jit_compile
        )
        self.console = Console(
            self.config.num_steps, enabled=self.chief, log_seconds=run.console_seconds
        )
        self.inputs = TrainingInputs(
            preset, run, self.strategy, self.console, dataset, validation_dataset
        )
        self.reporting = Reporting(
            preset, model_dir, self.state, self.inputs, self.console, self.chief
        )
        self._prepared = None  # (start step, training batches), from prepare().
        self._restored = None  # The step restore() reached, until prepare() takes it.
        self.current_step = 0  # The last step done (for a stop's acknowledgement).

    def restore(self) -> int:
        """Restores the newest intact checkpoint (or init_from's weights) and
        says so; returns the step reached, which ``prepare`` starts from."""
        self._restored = self.state.restore()
        if self.state.resumed_from:
            self.console.event(f"Resumed from {self.state.resumed_from} at step {self._restored}")
        if self.state.initialized_from:
            self.console.event(f"Started from the weights in {self.state.initialized_from}")
        return self._restored

    def prepare(self) -> int:
        """Restores the newest intact checkpoint and opens the training and
        validation data (a DataError comes before anything is written);
        returns the step to start from. ``train`` calls it if need be."""
        if self._prepared is None:
            start = self._restored if self._restored is not None else self.restore()
            self._restored = None
            if self.chief:
                self.state.remove_temporary_checkpoints()
            self._prepared = (start, self.inputs.batches(start))
            self.inputs.validation_batches()
        return self._prepared[0]

    def last_checkpoint(self) -> Optional[str]:
        """The newest complete checkpoint of the run (None before the first)."""
        return self.state.last_checkpoint()

    def validation_loss(self) -> float:
        """The mean negative ELBO (beta = 1) over the validation batches."""
        return self.reporting.validation_loss()

    def train(self, num_steps: Optional[int] = None, progress: bool = True, stop=None) -> dict:
        """Trains up to ``num_steps`` (default: the config's), resuming from the
        newest intact checkpoint in model_dir; returns the last step's metrics.
        ``progress``: show the progress line and the run's events on stdout.
        ``stop``: a common.stopping.Stopper (or anything with a ``requested``
        event): once it is set, the step in flight finishes, a checkpoint of it
        is written, and Stopped is raised.

        Raises:
          Stopped: after a stop request, with the checkpoint written.
          NonFiniteError: max_nonfinite non-finite updates in a row.
          faults.FaultError: a checkpoint or summary could not be written.
        """
        num_steps = self.config.num_steps if num_steps is None else num_steps
        self.console.enabled = progress and self.chief
        self.console.total = num_steps
        self.prepare()
        start, batches = self._prepared
        self._prepared = None  # The next call resumes afresh.
        self.state.start_clock()
        self.reporting.open()
        self.current_step = start
        if stop is not None and hasattr(stop, "graceful"):
            stop.graceful(
                lambda: (
                    f"stopping after step {self.current_step + 1}, then writing a checkpoint of it"
                )
            )
        cadence, metrics = Cadence(start), {}
        try:
            for step in range(start + 1, num_steps + 1):
                metrics = self._step(step, next(batches), cadence, num_steps)
                stopping = self._after_step(step, metrics, cadence, num_steps, stop)
                if stopping:
                    raise Stopped(step, stopping)
        finally:
            self.reporting.close()
        return metrics

    def _step(self, step: int, batch, cadence: Cadence, num_steps: int) -> dict:
        """Runs training step ``step`` (timed, its learning rate set); returns
        its metrics as floats."""
        self.state.set_learning_rate(step, first=step == cadence.start + 1)
        began = time.perf_counter()
        with self.reporting.before_step(step, cadence, self.jit_compile):
            metrics = {k: float(v) for k, v in self.step_function(batch).items()}
        self.current_step = step
        self.reporting.step_timed(step, time.perf_counter() - began, cadence, num_steps)
        if not metrics["skipped"]:
            return metrics
        reason = self.reporting.skipped(step, metrics)
        in_a_row = int(self.state.nonfinite_in_a_row.numpy())
        if in_a_row >= self.config.max_nonfinite:
            raise NonFiniteError(
                f"{in_a_row} non-finite updates in a row (at step {step}: {reason}); stopping. "
                f"The last good checkpoint {self.last_checkpoint()} is intact and no "
                "non-finite value was saved. Try a lower learning rate or check the data."
            )
        return metrics

    def _after_step(
        self, step: int, metrics: dict, cadence: Cadence, num_steps: int, stop
    ) -> Optional[str]:
        """What is due after ``step``: the reports, validation, a checkpoint
        (every worker agrees on those by time and on a stop). Returns the
        checkpoint written for a stop request, or None."""
        config, last = self.config, step == num_steps
        by_time, stopping = any_worker(
            self.strategy,
            time.monotonic() - cadence.last_save >= 60 * config.checkpoint_minutes,
            stop is not None and stop.requested.is_set(),
        )
        checkpoint = step % config.checkpoint_every == 0 or last or by_time or stopping
        self.reporting.after_step(step, metrics, cadence, last, checkpoint, stopping)
        validation_due = step % config.validation_every == 0 or last
        if validation_due and self.inputs.validates and not stopping:
            self.reporting.validate(step)
        if not checkpoint:
            return None
        path = self.state.save()
        cadence.last_save = time.monotonic()
        reason = f" ({config.checkpoint_minutes:g} minutes since the last)"
        self.console.event(
            f"step {step}: checkpoint {path}{reason if by_time and not stopping else ''}"
        )
        return path if stopping else None
