"""The paper's figures as PNG files (matplotlib).

Each function draws one figure from a model, writes it to ``path`` and returns
the image grid(s) it shows (values in [0, 1]) so that callers can check them.
Pictures are sample means (the paper's "sample averages") unless named samples.
"""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vnca_tf.data.pictures import image_grid  # noqa: E402
from vnca_tf.evaluation.reports import EvaluationError  # noqa: E402
from vnca_tf.models.interface import GenerativeModel  # noqa: E402

FIGURES = (
    "reconstructions",
    "samples",
    "growth",
    "interpolations",
    "tsne",
    "damage_recovery",
    "damage_during_growth",
)


def applicable(model: GenerativeModel) -> tuple:
    """The figures that exist for a model (a VAE or an exported one): growth
    and damage for models that grow (damage recovery for non-doubling VNCAs,
    damage during growth for doubling ones); the t-SNE for binary digits."""
    names = ["reconstructions", "samples", "interpolations"]
    if model.likelihood.binary:
        names.append("tsne")
    if model.growth_columns:
        names.append("growth")
    if model.damage_kind:
        names.append(model.damage_kind)
    return tuple(name for name in FIGURES if name in names)


def _show(grid):
    grid = np.asarray(grid)
    return grid[..., 0] if grid.shape[-1] == 1 else grid


def _save(panels, path, width_inches=None):
    """Draws {title: grid} side by side and saves the PNG."""
    fig, axes = plt.subplots(
        1, len(panels), squeeze=False, figsize=(width_inches or 5 * len(panels), 5)
    )
    for ax, (title, grid) in zip(axes[0], panels.items(), strict=True):
        ax.imshow(_show(grid), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _unit(model: GenerativeModel, images):
    return tf.cast(images, tf.float32) / model.likelihood.max_value


def reconstructions(model: GenerativeModel, images, path, seed=0, columns=8):
    """Test images (odd rows) above their reconstructions (even rows), Fig. 3."""
    _, means = model.reconstruct(images, seed=seed)
    originals = _unit(model, images)
    rows = []
    for start in range(0, len(images), columns):
        rows += [originals[start : start + columns], means[start : start + columns]]
    grid = image_grid(tf.concat(rows, 0), columns).numpy()
    _save({"test images / reconstructions": grid}, path)
    return grid


def samples(model: GenerativeModel, path, num_samples=64, seed=0):
    """Unconditional samples and sample means, Fig. 3 / 6 / 7."""
    drawn, means = model.sample(num_samples, seed=seed)
    columns = int(np.ceil(np.sqrt(num_samples)))
    grids = {
        "samples": image_grid(_unit(model, drawn), columns).numpy(),
        "sample means": image_grid(means, columns).numpy(),
    }
    _save(grids, path)
    return grids


def growth(model: GenerativeModel, path, seed=0):
    """One sample growing: the initial grid, every step and every doubling (Fig. 4/8)."""
    z = model.prior.sample(1, seed=seed)
    grid = image_grid(model.growth_frames(z, seed=seed)[:, 0], model.growth_columns).numpy()
    _save({"growth (time: left to right, top to bottom)": grid}, path)
    return grid


def interpolations(model: GenerativeModel, images, path, num_rows=4, num_points=10, seed=0):
    """Linear interpolations between the encodings of pairs of images, Fig. 5a."""
    if len(images) < 2 * num_rows:
        raise ValueError(f"Interpolations need {2 * num_rows} images, got {len(images)}.")
    means = model.encode_mean(images[: 2 * num_rows])
    start, end = means[:num_rows], means[num_rows : 2 * num_rows]
    weights = tf.linspace(0.0, 1.0, num_points)[None, :, None]
    path_z = start[:, None] * (1.0 - weights) + end[:, None] * weights
    pictures = model.decode_mean(tf.reshape(path_z, [-1, path_z.shape[-1]]), seed=seed)
    grid = image_grid(pictures, num_points).numpy()
    _save({"interpolations": grid}, path, width_inches=10)
    return grid


def tsne(model: GenerativeModel, images, labels, path, seed=0):
    """A t-SNE of the posterior means coloured by label, Fig. 5b/5c; returns the
    2-d embedding."""
    from sklearn.manifold import TSNE  # Imported when used: it is slow to import.

    encodings = np.concatenate(
        [model.encode_mean(images[i : i + 500]).numpy() for i in range(0, len(images), 500)]
    )
    embedding = TSNE(2, init="pca", random_state=seed).fit_transform(encodings)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(7, 7))
    scatter = ax.scatter(embedding[:, 0], embedding[:, 1], c=labels, cmap="tab10", s=3)
    ax.legend(*scatter.legend_elements(), title="digit", loc="best", fontsize=7)
    ax.set_title(f"t-SNE of {len(labels)} test encodings")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return embedding


def damage_recovery(model: GenerativeModel, path, num_samples=8, seed=0):
    """Samples, the same damaged, then recovered (non-doubling VNCA, Fig. 9/10)."""
    z = model.prior.sample(num_samples, seed=seed)
    rows = model.damage_recovery(z, seed=seed)
    grid = image_grid(tf.concat(rows, 0), num_samples).numpy()
    _save({"samples / damaged / recovered": grid}, path)
    return grid


def _damage_columns(model: GenerativeModel, z, damaged):
    """Mean images of z decoded intact, then the ``damaged`` ones beside them."""
    columns = [model.decode_mean(z), *tf.unstack(damaged)]
    return image_grid(
        tf.reshape(tf.stack(columns, 1), [-1, *columns[0].shape[1:]]), len(columns)
    ).numpy()


def damage_during_growth(model: GenerativeModel, path, baseline=None, num_samples=4, seed=0):
    """Samples damaged (right half zeroed) at each stage of growth: intact, then
    t = 0, M, 2M, ... (just before each doubling), Fig. 11; beside it the
    baseline damaged before each up-convolution (t = 0 and M both map to the
    first, as in the paper)."""
    z = model.prior.sample(num_samples, seed=seed)
    damaged = model.damage_during_growth(z)
    grids = {"VNCA": _damage_columns(model, z, damaged)}
    if baseline is not None:
        bz = baseline.prior.sample(num_samples, seed=seed)
        grids["deep convolutional baseline"] = _damage_columns(
            baseline, bz, baseline.damage_at_each_upsampling(bz, len(damaged))
        )
    _save(grids, path)
    return grids


def draw_figures(
    model: GenerativeModel,
    names,
    images,
    output_dir: str,
    labels=None,
    baseline=None,
    seed: int = 0,
) -> dict:
    """Draws the named figures (see FIGURES) into output_dir; returns
    {name: path}. ``images``: test images (a numpy batch, a seeded draw from
    the whole split: data.draw_batch), all shown in the reconstructions, the
    first 8 interpolated; ``labels`` their labels for the t-SNE."""
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        raise EvaluationError(f"Unknown figure(s) {unknown}; known: {', '.join(FIGURES)}.")
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for name in names:
        path = os.path.join(output_dir, f"{name}.png")
        if name == "reconstructions":
            reconstructions(model, images, path, seed=seed)
        elif name == "samples":
            samples(model, path, seed=seed)
        elif name == "interpolations":
            interpolations(model, images, path, seed=seed)
        elif name == "tsne":
            if labels is None:
                raise EvaluationError(
                    "The t-SNE figure colours encodings by digit label; "
                    "it needs MNIST (labels come with the mnist dataset)."
                )
            tsne(model, images, labels, path, seed=seed)
        elif name not in applicable(model):
            raise EvaluationError(
                f"This model ({model.damage_kind or 'a baseline'}) has no {name} figure: "
                "growth needs a VNCA, damage_recovery a non-doubling one (a *_damage "
                "preset), damage_during_growth a doubling one."
            )
        elif name == "growth":
            growth(model, path, seed=seed)
        elif name == "damage_recovery":
            damage_recovery(model, path, seed=seed)
        else:
            damage_during_growth(model, path, baseline=baseline, seed=seed)
        paths[name] = path
    return paths
