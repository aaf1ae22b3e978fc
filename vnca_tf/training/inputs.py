"""The training run's images: the training batches from any step on,
distributed over the replicas, and the fixed validation batches."""

import time

import tensorflow as tf

from vnca_tf import data
from vnca_tf.common.console import Console
from vnca_tf.configs import Preset, RunConfig


class TrainingInputs:
    """The batches of ``preset``'s dataset (read as ``run`` says), or of
    ``dataset`` and ``validation_dataset`` when given (tests), for ``strategy``;
    loading is announced on ``console``."""

    def __init__(
        self,
        preset: Preset,
        run: RunConfig,
        strategy,
        console: Console,
        dataset=None,
        validation_dataset=None,
    ):
        self.preset, self.run, self.strategy, self.console = preset, run, strategy, console
        self.config = preset.train
        self._dataset, self._validation_dataset = dataset, validation_dataset
        self._validation_images = None

    def _load(self, split: str):
        """A split of the preset's dataset at the model's image size."""
        return data.load(
            self.preset.dataset,
            split,
            data_dir=self.run.data_dir,
            source=self.run.data_source,
            image_size=self.preset.model.image_shape[0],
        )

    def batches(self, start_step: int):
        """An iterator over the training batches from ``start_step`` on, distributed."""
        dataset = self._dataset
        if dataset is None:
            split = data.get_spec(self.preset.dataset).paper_train_split
            began = time.perf_counter()
            self.console.event(f"Loading {self.preset.dataset} ({split}) ...")
            with self.console.working(f"loading {self.preset.dataset} ({split})"):
                dataset = self._load(split)
            self.console.event(
                f"Loaded {int(dataset.cardinality()):,} training images in "
                f"{time.perf_counter() - began:.1f} s"
            )
        dataset = data.shuffled(
            dataset,
            self.config.seed,
            batch_size=self.config.batch_size,
            drop_remainder=True,
            skip_batches=start_step,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    def validation_batches(self) -> list:
        """The first validation_batches batches of the validation split, loaded once."""
        if self._validation_images is None:
            dataset = self._validation_dataset
            if dataset is None:
                dataset = self._load(data.get_spec(self.preset.dataset).validation_split)
            count = self.config.validation_batches * self.config.batch_size
            self._validation_images = next(iter(dataset.batch(count)))
        return tf.split(
            self._validation_images,
            _split_sizes(len(self._validation_images), self.config.batch_size),
        )


def _split_sizes(total: int, size: int):
    """Sizes of consecutive batches of at most ``size`` covering ``total``."""
    return [size] * (total // size) + ([total % size] if total % size else [])
