"""What a training run shows after each step: the progress line, TensorBoard
scalars (at the first step, every log_every steps and every log_minutes),
images (at the first checkpoint and every image_every steps) and, for a run
that validates (training.inputs), the validation loss with the best checkpoint."""

import dataclasses
import math
import os
import time
from typing import Optional

import tensorflow as tf

from vnca_tf.common import faults
from vnca_tf.common.console import Console
from vnca_tf.configs import Preset, kind_of
from vnca_tf.training import summaries
from vnca_tf.training.inputs import TrainingInputs
from vnca_tf.training.state import TrainingState


@dataclasses.dataclass
class Cadence:
    """What one call of ``Trainer.train`` has done so far, for what is due next."""

    start: int
    window_seconds: float = 0.0
    window_steps: int = 0
    last_save: float = dataclasses.field(default_factory=time.monotonic)
    last_scalars: float = -math.inf
    pictured: bool = False  # Images at the first checkpoint, then every image_every.

    def timed(self, seconds: float) -> None:
        """Counts one step of ``seconds`` into the rate's window."""
        self.window_seconds += seconds
        self.window_steps += 1

    def steps_per_second(self) -> float:
        """The rate since the last scalars; starts a new window."""
        rate = self.window_steps / self.window_seconds
        self.window_seconds, self.window_steps = 0.0, 0
        return rate


class Reporting:
    """Writes a run's console lines and TensorBoard logs in ``model_dir``."""

    def __init__(
        self,
        preset: Preset,
        model_dir: str,
        state: TrainingState,
        inputs: TrainingInputs,
        console: Console,
        chief: bool,
    ):
        self.preset, self.model_dir, self.state = preset, model_dir, state
        self.inputs, self.console = inputs, console
        self.config, self.chief = preset.train, chief
        self.writer = None  # From open().

    def open(self) -> None:
        """Opens the TensorBoard logs (at the start of each training call)."""
        with faults.doing(f"Opening the TensorBoard logs in {self.model_dir}"):
            self.writer = summaries.Writer(self.model_dir, self.chief)

    def after_step(
        self, step: int, metrics: dict, cadence: Cadence, last: bool, checkpoint: bool, stopping
    ) -> None:
        """The progress line, then the scalars and images due after ``step``
        (``checkpoint``: one is written after it; ``stopping``: no images)."""
        config = self.config
        self.console.progress(
            step,
            f"loss {metrics['loss']:.2f} ({summaries.describe_loss(metrics['loss'], self.preset)})",
            force=last,
        )
        with faults.doing(f"Writing the TensorBoard logs in {self.model_dir}"):
            if (
                step % config.log_every == 0
                or last
                or step == cadence.start + 1
                or time.monotonic() - cadence.last_scalars >= 60 * config.log_minutes
            ):
                self._scalars(step, dict(metrics, steps_per_s=cadence.steps_per_second()))
                cadence.last_scalars = time.monotonic()
            due = step % config.image_every == 0 or last or (checkpoint and not cadence.pictured)
            if due and not stopping:
                images = self.inputs.picture_images()
                self.writer.images(step, self.state.model, images, config.seed)
                self.writer.flush()
                cadence.pictured = True
                self.console.event(
                    f"step {step}: images for TensorBoard in "
                    f"{os.path.join(self.model_dir, 'train')}"
                )

    def skipped(self, step: int, metrics: dict) -> str:
        """Says why the update of ``step`` was skipped, on the console and in
        TensorBoard (the nonfinite/ scalars, at the skipped step); returns the
        reason."""
        with faults.doing(f"Writing the TensorBoard logs in {self.model_dir}"):
            self.writer.nonfinite_scalars(step, metrics)
        state, scale = self.state, metrics["loss_scale"]
        if metrics["float16_overflow"]:
            reason = f"a float16 overflow of the gradient; the loss scale halves to {scale:g}"
        else:
            reason = f"not finite: {_nonfinite_parts(metrics, self.config.batch_size)}"
            if state.loss_scale.enabled:
                reason += f"; the float16 loss scale is now {scale:g}"
        self.console.event(
            f"step {step:,}: update skipped, {reason}; {int(state.nonfinite_in_a_row.numpy())} "
            f"non-finite in a row (the run stops at {self.config.max_nonfinite}), "
            f"{int(state.nonfinite_total.numpy())} skipped in the run"
        )
        return reason

    def _scalars(self, step: int, metrics: dict) -> None:
        pool = self.state.pool
        self.writer.scalars(
            step,
            metrics,
            self.preset,
            self.state.optimizer,
            int(self.state.nonfinite_total.numpy()),
            None if pool is None else int(pool.size.numpy()),
        )
        self.writer.flush()

    def validation_loss(self) -> float:
        """The mean negative ELBO (beta = 1) over the validation batches."""
        if not self.inputs.validates:
            raise ValueError(f"This run has no validation: {self.inputs.describe_validation()}.")
        total, count = 0.0, 0
        for index, images in enumerate(self.inputs.validation_batches()):
            terms = self._validation_elbo(images, tf.constant([self.config.seed, index]))
            total += float(tf.reduce_sum(terms))
            count += int(images.shape[0])
        return total / count

    @tf.function
    def _validation_elbo(self, images, seed):
        return self.state.model.negative_elbo(images, seed=seed)["loss"]

    def validate(self, step: int) -> None:
        """Logs the validation loss and says so; saves a new best to the best
        checkpoint."""
        loss = self.validation_loss()
        with faults.doing(f"Writing the TensorBoard logs in {self.model_dir}"):
            self.writer.validation_scalars(step, loss, self.preset)
        line = (
            f"step {step}: validation loss {loss:.4f} "
            f"({summaries.describe_loss(loss, self.preset)})"
        )
        if loss < float(self.state.best_validation.numpy()):
            self.state.best_validation.assign(loss)
            line += f", the best so far: saved as {self.state.save('best')}"
        self.console.event(line)

    def before_step(self, step: int, cadence: Cadence, jit_compile: bool):
        """Says that the first step is being built; returns the console's
        watchdog context for the step."""
        first = step == cadence.start + 1
        if first:
            self.console.event(
                f"Building the training step (tracing the graph"
                f"{', compiling it with XLA' if jit_compile else ''}) ..."
            )
        return self.console.working(
            "building and running the first step" if first else f"step {step:,}"
        )

    def step_timed(self, step: int, seconds: float, cadence: Cadence, num_steps: int) -> None:
        """Counts the step's time; after the first step says how long it took,
        after the second whether the run needs more than a day here."""
        self.console.step_done(seconds)
        cadence.timed(seconds)
        if step == cadence.start + 1:
            self.console.event(f"step {step:,} took {seconds:.1f} s (building the step included)")
        elif step == cadence.start + 2 and self.console.steps_per_second:
            gpus = len(tf.config.list_logical_devices("GPU"))
            note = long_run_note(
                1.0 / self.console.steps_per_second, num_steps - step, gpus, self.preset.model
            )
            if note:
                self.console.event(note)

    def close(self) -> None:
        self.console.close()
        self.writer.flush()


def _nonfinite_parts(metrics: dict, batch_size: int) -> str:
    """What was not finite in a skipped update, in words."""
    parts = [
        f"the {name} of {int(metrics[key]):,} of {batch_size:,} images"
        for name, key in (("likelihood", "nonfinite_likelihood"), ("KL", "nonfinite_kl"))
        if metrics[key]
    ]
    if parts:
        return " and ".join(parts) + (
            " (and so the gradient)" if metrics["nonfinite_gradient"] else ""
        )
    if metrics["nonfinite_gradient"]:
        return "the gradient only (every image's loss was finite: a fault in the backward pass)"
    return "the loss summed over the batch (every image's terms were finite: an overflow)"


def long_run_note(seconds_per_step: float, steps_left: int, gpus: int, model) -> Optional[str]:
    """A line for a run whose remaining steps take more than a day on the
    devices found, naming a preset of the model's kind made for a CPU (or
    saying there is none); None for a shorter one."""
    remaining = seconds_per_step * steps_left
    if remaining <= 86_400:
        return None
    devices = f"{gpus} GPU(s)" if gpus else "the CPU (no GPU found)"
    kind = kind_of(model)
    advice = (
        f"try --preset={kind.small_preset} (made for a CPU)."
        if kind.small_preset
        else f"train it on GPUs: no {kind.title} preset is made for a CPU."
    )
    return (
        f"Note: at {seconds_per_step:.1f} s a step on {devices}, the {steps_left:,} steps "
        f"left take about {remaining / 86_400:.0f} days here. On a machine like this, {advice}"
    )
