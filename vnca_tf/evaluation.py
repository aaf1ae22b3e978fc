"""Evaluation: restore a trained model, measure the paper's log-likelihood, draw
the paper's figures.

The log-likelihood is the importance-weighted bound with k = 128 samples
(Burda et al.) per test image, in nats per image and bits per dimension, with
its standard error over the images.
"""

import collections
import dataclasses
import json
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from vnca_tf import configs, data, figures, run_folder
from vnca_tf.console import Console
from vnca_tf.export import LoadedModel, read_assets
from vnca_tf.units import bits_per_dim


class EvaluationError(ValueError):
    """A model folder or dataset that cannot be evaluated, and why."""


def load_saved_model(path: str):
    """(model, preset) from an exported SavedModel version folder."""
    try:
        model = LoadedModel(path)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from None
    return model, model.preset


def read_preset_of(model_dir: Optional[str] = None, saved_model: Optional[str] = None):
    """The preset of a training folder or an exported version folder, read
    from its JSON alone (fast: for a header before the model loads)."""
    if saved_model:
        try:
            return read_assets(saved_model)[0]
        except FileNotFoundError as error:
            raise EvaluationError(str(error)) from None
    return run_folder.read_preset(model_dir)


def test_images(preset: configs.Preset, split: str = "test", data_dir=None,
                source: str = "auto", dataset: Optional[str] = None):
    """The evaluation split of ``dataset`` (default: the model's), at the model's
    image size; an error if its images are not the shape the model models."""
    name = dataset or preset.dataset
    images = data.load(name, split, data_dir=data_dir, source=source,
                       image_size=preset.model.image_shape[0])
    shape = tuple(images.element_spec.shape)
    if shape != tuple(preset.model.image_shape):
        raise EvaluationError(
            f"The model ({preset.name}) models images of shape {preset.model.image_shape} "
            f"({preset.dataset}); {name} {split} gives {shape}. Evaluate it on "
            f"{preset.dataset}.")
    return images


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index``: the same for a checkpoint and its SavedModel."""
    return (seed * 1_000_003 + index) % (2 ** 31 - 1)


def log_likelihood(model, images, num_samples: int = 128, batch_size: int = 16,
                   chunk_size: int = 16, max_examples: Optional[int] = None, seed: int = 0,
                   progress: bool = True) -> dict:
    """IWAE-k log-likelihood over ``images`` (a dataset of single images), for a
    trained model or an exported one (export.LoadedModel).

    Returns mean and standard error in nats per image and bits/dim in the
    likelihood's own convention, the number of images, k, and the time taken;
    for a likelihood with several conventions (RGB: "pixelcnn", the paper's,
    and "exact") also ``likelihood_convention`` and ``by_convention``, the same
    figures in each, from the same importance samples.
    """
    if max_examples:
        images = images.take(max_examples)
    iwae_bounds = tf.function(model.iwae_bounds)  # A VAE or a LoadedModel alike.
    own = model.likelihood.conventions[0]

    total = int(images.cardinality())
    if total < 0:  # Unknown: count them (the images are in memory).
        total = int(images.reduce(0, lambda count, _: count + 1))
    console = Console(total, enabled=progress, unit="image", estimate_from_first=True)
    values, start, done = collections.defaultdict(list), time.perf_counter(), 0
    for index, batch in enumerate(images.batch(batch_size)):
        began = time.perf_counter()
        index_seed = tf.constant([batch_seed(seed, index), 0])
        first = done == 0
        with console.working(("building the graph, then " if first else "")
                             + f"IWAE-{num_samples} of images {done + 1:,}-"
                             f"{done + len(batch):,}"):
            bounds = iwae_bounds(batch, num_samples, index_seed, chunk_size)
        for name, bound in bounds.items():
            values[name].append(np.asarray(bound))
        console.step_done(time.perf_counter() - began, len(batch))
        done += len(batch)
        console.progress(done, f"log p(x) >= {np.concatenate(values[own]).mean():.2f} nats",
                         force=done == total)
    console.close()
    dims = int(np.prod(model.config.image_shape))
    figures_by_convention = {name: _summary(np.concatenate(parts), dims)
                             for name, parts in values.items()}
    report = {"num_examples": int(sum(len(part) for part in values[own])),
              "num_samples": num_samples, **figures_by_convention[own],
              "seconds": time.perf_counter() - start}
    if len(figures_by_convention) > 1:
        report["likelihood_convention"] = own
        report["by_convention"] = figures_by_convention
    return report


def _summary(values, dims: int) -> dict:
    """Mean and standard error of per-image log-likelihoods in nats and bits/dim."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise EvaluationError("The model gave non-finite log-likelihoods; is the "
                              "checkpoint damaged?")
    stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"log_likelihood_nats": float(values.mean()), "stderr_nats": float(stderr),
            "bits_per_dim": float(bits_per_dim(-values.mean(), dims)),
            "stderr_bits_per_dim": float(bits_per_dim(stderr, dims))}


def healing(model, num_samples: int = 100, seed: int = 0) -> dict:
    """How well a non-doubling VNCA regrows: for ``num_samples`` latents from the
    prior, the mean absolute difference of its mean image to the undamaged one
    right after a square of half the width is zeroed, and max_steps steps later
    (model.damage_recovery); a trained model brings the second well below the
    first."""
    z = tf.random.stateless_normal([num_samples, model.config.latent_size], [seed, 1])
    grown, damaged, recovered = (np.asarray(x) for x in model.damage_recovery(z, seed=seed))
    damaged_error = float(np.abs(damaged - grown).mean())
    recovered_error = float(np.abs(recovered - grown).mean())
    return {"num_samples": num_samples, "damaged_error": damaged_error,
            "recovered_error": recovered_error,
            "recovered_over_damaged": recovered_error / damaged_error}


def draw_figures(model, names, images, output_dir: str, labels=None, baseline=None,
                 seed: int = 0) -> dict:
    """Draws the named figures (see figures.FIGURES) into output_dir; returns
    {name: path}. ``images``: test images (a numpy batch); ``labels`` their
    labels for the t-SNE."""
    unknown = sorted(set(names) - set(figures.FIGURES))
    if unknown:
        raise EvaluationError(f"Unknown figure(s) {unknown}; known: "
                              f"{', '.join(figures.FIGURES)}.")
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for name in names:
        path = os.path.join(output_dir, f"{name}.png")
        if name == "reconstructions":
            figures.reconstructions(model, images[:32], path, seed=seed)
        elif name == "samples":
            figures.samples(model, path, seed=seed)
        elif name == "interpolations":
            figures.interpolations(model, images, path, seed=seed)
        elif name == "tsne":
            if labels is None:
                raise EvaluationError("The t-SNE figure colours encodings by digit label; "
                                      "it needs MNIST (labels come with the mnist dataset).")
            figures.tsne(model, images, labels, path, seed=seed)
        elif name not in figures.applicable(model):
            raise EvaluationError(
                f"This model ({model.damage_kind or 'a baseline'}) has no {name} figure: "
                "growth needs a VNCA, damage_recovery a non-doubling one (a *_damage "
                "preset), damage_during_growth a doubling one.")
        elif name == "growth":
            figures.growth(model, path, seed=seed)
        elif name == "damage_recovery":
            figures.damage_recovery(model, path, seed=seed)
        else:
            figures.damage_during_growth(model, path, baseline=baseline, seed=seed)
        paths[name] = path
    return paths


def default_output_dir(model_dir: Optional[str] = None,
                       saved_model: Optional[str] = None) -> str:
    """Where evaluate.py writes by default: MODEL_DIR/evaluation for a training
    folder, runs/evaluation/NAME/VERSION for the SavedModel NAME/VERSION (never
    beside it: the shipped models' results are tracked files)."""
    if saved_model:
        return os.path.join("runs", "evaluation",
                            *os.path.normpath(saved_model).split(os.sep)[-2:])
    return os.path.join(model_dir, "evaluation")


def check_replaceable(path: str, num_examples: Optional[int]) -> None:
    """Refuses to replace a report measured on more images than
    ``num_examples`` (None: the whole split, which replaces any)."""
    if num_examples is None or not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            earlier = int(json.load(f).get("num_examples", 0))
    except (ValueError, TypeError, AttributeError):
        return  # Not a report of ours: nothing to keep.
    if earlier > num_examples:
        raise EvaluationError(
            f"{path} holds a result over {earlier} images; this one, over {num_examples}, "
            f"would replace it. Pass another --output_dir, or --max_examples={earlier} "
            "or more.")


def write_report(report: dict, path: str) -> str:
    """Writes ``report`` as JSON to ``path``, unless that replaces one measured
    on more images (see check_replaceable); returns the path."""
    check_replaceable(path, report["num_examples"])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def report_header(preset: configs.Preset, split: str, source: str, training: dict) -> dict:
    """What a report says about the model, its training and the data it was
    measured on."""
    return {"preset": preset.name, "dataset": preset.dataset, "split": split,
            "image_shape": list(preset.model.image_shape), "model_source": source,
            "training": training, "model": dataclasses.asdict(preset.model)}
