"""The training state: everything a checkpoint holds, and its checkpoints.

The model's weights, the optimizer (Adam's moments and its step), the training
step, the counts of non-finite updates, the best validation loss, the loss
scale, the pool of grown states, and the wall-clock time trained. The data's
position is the step itself (the pipeline skips the batches already seen), so
restoring these continues a run exactly. Checkpoints go to the run folder's
latest and best folders (training.run_folder); the newest that reads is
restored, and a fine-tune starts from init_from's weights.
"""

import math
import time
from typing import Optional

import keras
import tensorflow as tf

from vnca_tf.common import faults
from vnca_tf.configs import CHECKPOINTS, Preset, RunConfig
from vnca_tf.models import build_model, storage
from vnca_tf.training import run_folder
from vnca_tf.training.distribution import MIRRORED
from vnca_tf.training.loss_scale import DynamicLossScale
from vnca_tf.training.optimizers import TorchAdam, learning_rate_at
from vnca_tf.training.pool import Pool


class TrainingState:
    """The state of training ``preset`` in ``model_dir`` under ``strategy``,
    whose replicas each take ``local_batch`` images; ``worker`` names a
    non-chief worker of a cluster, whose checkpoints go to a folder of its own
    (saving can involve collectives, so every worker saves)."""

    def __init__(
        self,
        preset: Preset,
        model_dir: str,
        strategy,
        run: RunConfig,
        local_batch: int,
        worker: Optional[str] = None,
    ):
        config = preset.train
        self.config = config
        self.model_dir = model_dir
        keras.utils.set_random_seed(config.seed)  # Seeded initial weights.
        with strategy.scope():
            self.model = build_model(preset.model, run.precision, run.recompute)
            self.optimizer = TorchAdam(config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, name="step", **MIRRORED)
            self.nonfinite_total = tf.Variable(0, dtype=tf.int64, **MIRRORED)
            self.nonfinite_in_a_row = tf.Variable(0, dtype=tf.int64, **MIRRORED)
            self.best_validation = tf.Variable(math.inf, dtype=tf.float32, **MIRRORED)
            # Wall-clock seconds of training up to the checkpoint (over resumes).
            self.train_seconds = tf.Variable(0.0, dtype=tf.float64, **MIRRORED)
            self.loss_scale = DynamicLossScale(run.precision == "mixed_float16")
            self.pool = None
            if config.pool_size:
                if self.model.pool_cell_shape is None:
                    raise ValueError(
                        "Pool and damage training is for non-doubling VNCAs; "
                        "set pool_size=0 for this model."
                    )
                self.pool = Pool(
                    config.pool_size,
                    preset.model.image_shape,
                    self.model.pool_cell_shape,
                    config.damage_size,
                    local_batch,
                    strategy.num_replicas_in_sync,
                    config.pool_damaged,
                )
        trackables = {
            "model": self.model,
            "optimizer": self.optimizer,
            run_folder.STEP: self.step,
            run_folder.TRAIN_SECONDS: self.train_seconds,
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "best_validation": self.best_validation,
            "loss_scale": self.loss_scale,
        }
        if self.pool is not None:
            trackables["pool"] = self.pool
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.managers = {
            which: tf.train.CheckpointManager(
                self.checkpoint,
                run_folder.checkpoint_folder(model_dir, which, worker),
                max_to_keep=config.keep_checkpoints if which == "latest" else 1,
            )
            for which in CHECKPOINTS
        }
        self.resumed_from = self.initialized_from = None
        self._clock = time.perf_counter()

    def restore(self) -> int:
        """Restores the newest intact checkpoint, if any (newer ones that do not
        read are skipped with a warning), else reads the model's weights from
        ``init_from`` if set (a fine-tune); returns the step reached."""
        latest = self.managers["latest"]
        self.resumed_from = self.initialized_from = None
        if latest.checkpoints:
            self.resumed_from = run_folder.read_newest_intact(self._resume, latest.checkpoints)
        elif self.config.init_from:
            self.initialized_from = run_folder.read_initial_weights(
                self.model, self.config.init_from
            )
        return int(self.step.numpy())

    def _resume(self, path: str) -> None:
        """Restores the whole state from the checkpoint ``path``, once its model
        variables and the model's match one to one (storage.read_weights' rule)."""
        mismatches = storage.mismatched_variables(self.model, path)
        if mismatches:
            raise storage.WeightsMismatchError(
                f"The checkpoint {path} does not fit this run's model: {'; '.join(mismatches)}; "
                "another model or version of vnca_tf wrote it. Start a new --model_dir."
            )
        self.checkpoint.restore(path).assert_existing_objects_matched()

    def set_learning_rate(self, step: int, first: bool) -> None:
        """Sets the optimizer's rate for ``step`` (the run's ``first`` step, and
        each step where it drops tenfold)."""
        config = self.config
        rate = learning_rate_at(step, config.learning_rate, config.learning_rate_drops)
        if first or rate != learning_rate_at(
            step - 1, config.learning_rate, config.learning_rate_drops
        ):
            self.optimizer.learning_rate = rate

    def start_clock(self) -> None:
        """Counts training time from now (a run's start; a resume's)."""
        self._clock = time.perf_counter()

    def save(self, which: str = "latest") -> str:
        """Writes a checkpoint of the current step to the latest or best folder;
        a fault of the disk is a FaultError, and leaves no temporary files."""
        manager = self.managers[which]
        now = time.perf_counter()
        self.train_seconds.assign_add(now - self._clock)
        self._clock = now
        step = int(self.step.numpy())
        try:
            with faults.doing(f"Writing the checkpoint of step {step} to {manager.directory}"):
                return manager.save(checkpoint_number=step)
        except faults.FaultError:
            run_folder.remove_temporary_checkpoints(manager.directory)
            raise

    def last_checkpoint(self) -> Optional[str]:
        """The newest complete checkpoint of the run (None before the first)."""
        return self.managers["latest"].latest_checkpoint

    def remove_temporary_checkpoints(self) -> None:
        """Removes what interrupted saves left in the checkpoint folders."""
        for manager in self.managers.values():
            run_folder.remove_temporary_checkpoints(manager.directory)
