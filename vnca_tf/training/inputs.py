"""The training run's images: the training batches from any step on,
distributed over the replicas; the validation images, a seeded draw from the
dataset's held-out validation split where training does not read it (never
the test split; otherwise no validation and no best checkpoint); and the
images TensorBoard's reconstructions show."""

import time

import tensorflow as tf

from vnca_tf import data
from vnca_tf.common.console import Console
from vnca_tf.configs import Preset, RunConfig
from vnca_tf.data.subsets import count_elements

NUM_PICTURES = 8  # Images in TensorBoard's reconstructions.


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
        spec = data.get_spec(preset.dataset)
        self.train_split = self.config.train_split or spec.paper_train_split
        self.validation_split = data.validation_split_for(spec, self.train_split)
        self._dataset, self._validation_dataset = dataset, validation_dataset
        self._validation_images = None

    @property
    def validates(self) -> bool:
        """Whether the run has validation images (and so a best checkpoint)."""
        return self._validation_dataset is not None or self.validation_split is not None

    def describe_validation(self) -> str:
        """What the run validates on, or why it does not (console, config.json)."""
        count = self.config.validation_batches * self.config.batch_size
        if self._validation_dataset is not None:
            return f"{count:,} images drawn with seed {self.config.seed} from the given dataset"
        if self.validation_split is not None:
            return (
                f"{count:,} images drawn with seed {self.config.seed} from "
                f"{self.preset.dataset} {self.validation_split}; the best checkpoint is "
                "kept by their loss"
            )
        return (
            f"none: training reads {self.preset.dataset} {self.train_split}, which leaves "
            "no held-out validation split, and the test split never chooses a checkpoint; "
            "no best checkpoint is kept"
        )

    def _load(self, split: str):
        """A split of the preset's dataset at the model's image size."""
        return data.load_split(
            self.preset.dataset,
            split,
            data_dir=self.run.data_dir,
            source=self.run.data_source,
            image_size=self.preset.model.image_shape[0],
        )

    def training_images(self):
        """The training split's images (loaded once, and said so)."""
        if self._dataset is None:
            split, began = self.train_split, time.perf_counter()
            self.console.event(f"Loading {self.preset.dataset} ({split}) ...")
            with self.console.working(f"loading {self.preset.dataset} ({split})"):
                self._dataset = self._load(split)
            self.console.event(
                f"Loaded {count_elements(self._dataset):,} training images in "
                f"{time.perf_counter() - began:.1f} s"
            )
        return self._dataset

    def batches(self, start_step: int):
        """An iterator over the training batches from ``start_step`` on, distributed."""
        dataset = data.shuffled(
            self.training_images(),
            self.config.seed,
            batch_size=self.config.batch_size,
            drop_remainder=True,
            skip_batches=start_step,
        )
        return iter(self.strategy.experimental_distribute_dataset(dataset))

    def validation_batches(self) -> list:
        """The validation images in batches (none for a run without validation),
        drawn once with the run's seed from the validation split."""
        if self._validation_images is None:
            self.console.event(f"Validation: {self.describe_validation()}")
            if not self.validates:
                self._validation_images = []
            else:
                dataset = self._validation_dataset
                if dataset is None:
                    dataset = self._load(self.validation_split)
                count = self.config.validation_batches * self.config.batch_size
                self._validation_images = list(
                    tf.data.Dataset.from_tensor_slices(
                        data.draw_batch(dataset, count, self.config.seed)
                    ).batch(self.config.batch_size)
                )
        return self._validation_images

    def picture_images(self):
        """The images TensorBoard's reconstructions show: validation images, or
        (without validation) a seeded draw from the training images."""
        batches = self.validation_batches()
        if batches:
            return batches[0][:NUM_PICTURES]
        return data.draw_batch(self.training_images(), NUM_PICTURES, self.config.seed)
