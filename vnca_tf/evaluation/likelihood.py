"""The paper's log-likelihood: the importance-weighted bound with k = 128
samples (Burda et al.) per image, in nats per image and bits per dimension of
the dataset's own images, with its standard error over the images; for an RGB
model in both bin conventions of the logistic mixture, from the same
importance samples.
"""

import collections
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from vnca_tf import configs, data
from vnca_tf.common.console import Console
from vnca_tf.common.units import bits_per_dim
from vnca_tf.data.subsets import count_elements
from vnca_tf.evaluation.reports import EvaluationError
from vnca_tf.models.interface import GenerativeModel


def split_images(
    preset: configs.Preset,
    split: str = "test",
    data_dir=None,
    source: str = "auto",
    dataset: Optional[str] = None,
):
    """The split ``split`` of ``dataset`` (default: the model's), at the model's
    image size; an error if its images are not the shape the model models."""
    name = dataset or preset.dataset
    images = data.load_split(
        name, split, data_dir=data_dir, source=source, image_size=preset.model.image_shape[0]
    )
    shape = tuple(images.element_spec.shape)
    if shape != tuple(preset.model.image_shape):
        raise EvaluationError(
            f"The model ({preset.name}) models images of shape {preset.model.image_shape} "
            f"({preset.dataset}); {name} {split} gives {shape}. Evaluate it on "
            f"{preset.dataset}."
        )
    return images


def log_likelihood(
    model: GenerativeModel,
    images,
    num_dimensions: int,
    num_samples: int = 128,
    batch_size: int = 16,
    chunk_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """IWAE-k log-likelihood over ``images``, a dataset of (index in the split,
    image) pairs (data.draw), for a trained model or an exported one.

    Each image's bound comes from ``seed`` and its index (models.bounds), so
    the figures do not depend on ``batch_size`` or ``chunk_size``, and the
    images' bounds are independent draws: the standard error is their
    standard deviation over sqrt(n). Returns mean and standard error in nats
    per image and in bits per dimension (``num_dimensions``: the dataset's
    own, configs.data_dimensions) in the likelihood's own convention, the
    number of images, k, the time taken and each image's bound by its index
    (``per_image``); for a likelihood with several
    conventions (RGB: "pixelcnn", the paper's, and "exact") also
    ``likelihood_convention`` and ``by_convention``, the same figures in
    each, from the same importance samples.
    """
    iwae_bounds = tf.function(model.iwae_bounds)
    own = model.likelihood.conventions[0]
    total = count_elements(images)
    console = Console(total, enabled=progress, unit="image", estimate_from_first=True)
    values, indices, start, done = collections.defaultdict(list), [], time.perf_counter(), 0
    for ids, batch in images.batch(batch_size):
        indices.append(ids.numpy())
        began = time.perf_counter()
        first = done == 0
        with console.working(
            ("building the graph, then " if first else "")
            + f"IWAE-{num_samples} of images {done + 1:,}-"
            f"{done + len(batch):,}"
        ):
            bounds = iwae_bounds(batch, num_samples, seed, chunk_size, ids)
        for name, bound in bounds.items():
            values[name].append(np.asarray(bound))
        console.step_done(time.perf_counter() - began, len(batch))
        done += len(batch)
        console.progress(
            done, f"log p(x) >= {np.concatenate(values[own]).mean():.2f} nats", force=done == total
        )
    console.close()
    figures_by_convention = {
        name: _summary(np.concatenate(parts), num_dimensions) for name, parts in values.items()
    }
    report = {
        "num_examples": int(sum(len(part) for part in values[own])),
        "num_samples": num_samples,
        **figures_by_convention[own],
        "num_dimensions": num_dimensions,
        "seconds": time.perf_counter() - start,
        # Each image's bound, by its index in the split: a re-measurement of any
        # of them with the same seed and k gives the same numbers.
        "per_image": {
            "index": np.concatenate(indices).tolist(),
            "log_likelihood_nats": np.concatenate(values[own]).astype(float).round(4).tolist(),
        },
    }
    if len(figures_by_convention) > 1:
        report["likelihood_convention"] = own
        report["by_convention"] = figures_by_convention
    return report


def _summary(values, dims: int) -> dict:
    """Mean and standard error of per-image log-likelihoods in nats and bits/dim."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise EvaluationError(
            "The model gave non-finite log-likelihoods; is the checkpoint damaged?"
        )
    stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {
        "log_likelihood_nats": float(values.mean()),
        "stderr_nats": float(stderr),
        "bits_per_dim": float(bits_per_dim(-values.mean(), dims)),
        "stderr_bits_per_dim": float(bits_per_dim(stderr, dims)),
    }
