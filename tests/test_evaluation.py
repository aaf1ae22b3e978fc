import dataclasses
import json
import os
import re
import subprocess
import sys

import matplotlib.image
import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO, train_tiny

from vnca_tf import data, loading
from vnca_tf.evaluation import figures, healing, likelihood, reports
from vnca_tf.models import build_model
from vnca_tf.training.run_folder import RunFolderError, save_config


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory, data_dir):
    return train_tiny("test_mnist", str(tmp_path_factory.mktemp("mnist")), data_dir, 20)


@pytest.fixture(scope="module")
def damage_dir(tmp_path_factory, data_dir):
    return train_tiny("test_mnist_damage", str(tmp_path_factory.mktemp("damage")), data_dir)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, data_dir):
    return train_tiny("test_mnist_baseline", str(tmp_path_factory.mktemp("baseline")), data_dir)


@pytest.mark.slow
def test_iwae_128_is_at_least_the_elbo_on_the_same_images(mnist_dir, data_dir):
    model, preset, training = loading.restore(mnist_dir)
    assert training["steps"] == 20 and training["wall_time_s"] > 0
    images, _ = data.draw(likelihood.split_images(preset, data_dir=data_dir), 32, seed=0)
    report = likelihood.log_likelihood(model, images, 784, 128, batch_size=16, progress=False)
    _, batch = next(iter(images.batch(32)))
    elbos = [-model.negative_elbo(batch, seed=[s, 0])["loss"].numpy().mean() for s in range(8)]
    assert report["num_examples"] == 32 and report["num_samples"] == 128
    assert np.isfinite(report["log_likelihood_nats"]) and report["stderr_nats"] > 0
    assert report["log_likelihood_nats"] >= np.mean(elbos)
    # Bits per dimension of MNIST's own 28x28 pixels (the model grows 32x32).
    assert report["num_dimensions"] == 784
    assert report["bits_per_dim"] == pytest.approx(
        -report["log_likelihood_nats"] / (784 * np.log(2))
    )


@pytest.mark.slow
def test_evaluate_cli_writes_a_report(mnist_dir, data_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "evaluate.py"),
            f"--model_dir={mnist_dir}",
            f"--data_dir={data_dir}",
            "--max_examples=40",
            "--num_samples=16",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.load(open(tmp_path / "results.json"))
    assert report["num_examples"] == 40 and report["num_samples"] == 16
    assert report["subset"] == {
        "count": 40,
        "of": 10_000,
        "seed": 0,
        "how": "uniformly without replacement: numpy.random.default_rng(seed).choice, "
        "in file order",
    }
    checkpoint = os.path.join(mnist_dir, "checkpoints", "ckpt-20")
    assert report["protocol"] == {
        "dataset": "binarized_mnist",
        "split": "test",
        "num_samples": 16,
        "model_source": mnist_dir,
        "checkpoint": f"latest: {checkpoint}",
        "overrides": [],
    }
    assert report["training"]["steps"] == 20 and report["training"]["checkpoint"] == checkpoint
    assert report["seed"] == 0 and report["batch_size"] == 16 and report["chunk_size"] == 16
    assert report["data_source"] == f"local files in {os.path.join(data_dir, 'binarized_mnist')}"
    assert report["seconds"] > 0 and np.isfinite(report["log_likelihood_nats"])
    assert "over 40 of the 10,000 test images, drawn with seed 0, k = 16" in result.stdout
    lines = result.stdout.splitlines()  # What it measures, at once; then the progress.
    assert lines[:2] == [
        f"Evaluating {mnist_dir} (test_mnist, latest checkpoint) on binarized_mnist test: "
        "IWAE-16 on 40 images drawn with seed 0",
        "Loaded binarized_mnist test in "
        + lines[1].split(" in ")[1].split(":")[0]
        + ": 40 of the 10,000 test images, drawn with seed 0",
    ]
    assert re.fullmatch(
        r"image 16/40 \[#+\.+\] \| log p\(x\) >= -\d+\.\d\d nats \| .* "
        r"images/s \| ETA \d:\d\d:\d\d",
        lines[2],
    ), lines[2]

    def evaluate(*flags):
        command = [sys.executable, os.path.join(REPO, "evaluate.py"), f"--model_dir={mnist_dir}"]
        command += [f"--data_dir={data_dir}", f"--output_dir={tmp_path}", *flags]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    # A report is replaced only by the same measurement on more images: not by
    # one on fewer, nor by another k (or split, dataset, checkpoint, override).
    fewer = evaluate("--max_examples=20", "--num_samples=16")
    other_k = evaluate("--max_examples=80")
    assert fewer.returncode == 2 and fewer.stderr.splitlines() == [
        f"Error: {tmp_path}/results.json holds the same measurement over 40 images; this "
        "one, over 20, would replace it. Pass another --output_dir, or --max_examples "
        "above 40."
    ]
    assert other_k.returncode == 2 and other_k.stderr.splitlines() == [
        f"Error: {tmp_path}/results.json holds a report of another measurement "
        "(num_samples 16 there, 128 here); pass another --output_dir to keep both."
    ]
    assert json.load(open(tmp_path / "results.json")) == report
    with pytest.raises(reports.EvaluationError, match="over 40 images"):
        reports.write_report({**report, "num_examples": 40}, str(tmp_path / "results.json"))
    none = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "evaluate.py"),
            f"--model_dir={mnist_dir}",
            "--max_examples=0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert none.returncode != 0 and "Traceback" not in none.stderr
    assert "--max_examples=0: 0 is not" in none.stderr.splitlines()[0]
    # A SavedModel's report goes under runs/ (ignored), never beside the model.
    assert reports.default_output_dir(saved_model="saved_models/mnist_cpu/1/") == (
        os.path.join("runs", "evaluation", "mnist_cpu", "1")
    )


@pytest.mark.slow
def test_healing_compares_regrown_and_damaged_images_inside_the_erased_square(damage_dir, data_dir):
    model, preset, _ = loading.restore(damage_dir)
    images = data.draw_batch(likelihood.split_images(preset, data_dir=data_dir), 8, seed=0)
    result = healing.healing(model, images, seed=3)
    assert result["num_images"] == 8 and result["damaged_error"] > 0
    assert result["recovered_over_damaged"] == pytest.approx(
        result["recovered_error"] / result["damaged_error"]
    )
    assert healing.healing(model, images, seed=3) == result  # Seeded.
    # The erased square is half the width, one per image, where the damage is.
    region = model.damaged_region(8, seed=3).numpy()
    assert set(np.unique(region)) == {0.0, 1.0}
    np.testing.assert_array_equal(region.sum(axis=(1, 2, 3)), 14 * 14)
    z = model.encode_mean(images)
    grown, damaged, _ = (np.asarray(x) for x in model.damage_recovery(z, seed=3))
    changed = np.abs(damaged - grown) > 0
    assert not changed[region == 0].any() and changed[region == 1].mean() > 0.5
    # An untrained NCA (its last layer starts at zero) never changes its cells:
    # what was damaged stays damaged, exactly.
    still = build_model(presets.get("test_mnist_damage").model)
    frozen = healing.healing(still, images)
    assert frozen["recovered_error"] == frozen["damaged_error"] > 0


def _check_png(path, grid=None, shape=None):
    assert os.path.getsize(path) > 2000
    picture = matplotlib.image.imread(path)
    assert picture[..., :3].std() > 0.05  # Not blank.
    if shape is not None:
        assert np.asarray(grid).shape[:2] == shape
        assert np.asarray(grid).std() > 0.01


@pytest.mark.slow
def test_each_figure_is_drawn_with_its_layout(
    mnist_dir, damage_dir, baseline_dir, data_dir, tmp_path
):
    model, preset, _ = loading.restore(mnist_dir)
    images = data.draw_batch(likelihood.split_images(preset, data_dir=data_dir), 16, seed=0)
    cell = 33  # 32 pixels and a 1-pixel border.
    grid = figures.reconstructions(model, images, tmp_path / "r.png")
    _check_png(tmp_path / "r.png", grid, (4 * cell + 1, 8 * cell + 1))  # 2 x (originals, recons)
    grids = figures.samples(model, tmp_path / "s.png", num_samples=16)
    _check_png(tmp_path / "s.png", grids["samples"], (4 * cell + 1, 4 * cell + 1))
    grid = figures.growth(model, tmp_path / "g.png")
    frames = 1 + 5 * 2 + 4  # test_mnist: K = 4, M = 2.
    _check_png(tmp_path / "g.png", grid, (-(-frames // 3) * cell + 1, 3 * cell + 1))
    grid = figures.interpolations(model, images, tmp_path / "i.png", num_rows=4, num_points=10)
    _check_png(tmp_path / "i.png", grid, (4 * cell + 1, 10 * cell + 1))
    baseline, _, _ = loading.restore(baseline_dir)
    grids = figures.damage_during_growth(model, tmp_path / "d.png", baseline=baseline)
    _check_png(tmp_path / "d.png", grids["VNCA"], (4 * cell + 1, 6 * cell + 1))
    assert grids["deep convolutional baseline"].shape[:2] == (4 * 29 + 1, 6 * 29 + 1)
    damage_model, _, _ = loading.restore(damage_dir)
    grid = figures.damage_recovery(damage_model, tmp_path / "dr.png", num_samples=8)
    _check_png(tmp_path / "dr.png", grid, (3 * 29 + 1, 8 * 29 + 1))


def test_tsne_embeds_labelled_encodings(mnist_dir, data_dir, tmp_path):
    model, _, _ = loading.restore(mnist_dir)
    pairs = data.load_split("mnist", "test", data_dir=data_dir, with_labels=True)
    images, labels = (t.numpy() for t in next(iter(pairs.batch(300))))
    embedding = figures.tsne(model, images, labels, tmp_path / "t.png")
    assert embedding.shape == (300, 2) and np.isfinite(embedding).all()
    _check_png(tmp_path / "t.png")


@pytest.mark.slow
def test_all_figures_through_the_cli(damage_dir, data_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "evaluate.py"),
            f"--model_dir={damage_dir}",
            f"--data_dir={data_dir}",
            "--skip_likelihood",
            "--figures=all",
            "--tsne_examples=200",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = {"reconstructions", "samples", "interpolations", "tsne", "growth", "damage_recovery"}
    assert {p[:-4] for p in os.listdir(tmp_path)} == expected
    for name in expected:
        _check_png(tmp_path / f"{name}.png")


@pytest.mark.slow
def test_bad_model_folders_and_datasets_are_explained(mnist_dir, data_dir, tmp_path):
    with pytest.raises(RunFolderError, match="no config.json"):
        loading.restore(str(tmp_path))
    save_config(str(tmp_path), presets.get("test_mnist"))
    with pytest.raises(RunFolderError, match="No latest checkpoint .*train first"):
        loading.restore(str(tmp_path))
    _, preset, _ = loading.restore(mnist_dir)
    with pytest.raises(
        reports.EvaluationError,
        match=r"models images of shape \(32, 32, 1\).*celeb_a test gives "
        r"\(32, 32, 3\)",
    ):
        likelihood.split_images(preset, data_dir=data_dir, dataset="celeb_a")
    model, _, _ = loading.restore(mnist_dir)
    with pytest.raises(reports.EvaluationError, match="needs MNIST"):
        figures.draw_figures(model, ["tsne"], np.zeros((8, 32, 32, 1)), str(tmp_path))
    with pytest.raises(reports.EvaluationError, match="Unknown figure"):
        figures.draw_figures(model, ["histogram"], np.zeros((8, 32, 32, 1)), str(tmp_path))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "evaluate.py"), f"--model_dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and "No latest checkpoint" in result.stderr
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_rgb_bits_per_dim_come_in_both_bin_conventions(rng):
    # An untrained RGB VNCA whose logistics are sharp (the encoder's bias puts
    # z's log-scale channels at -6), so that many bins have a mass below 1e-5
    # and the authors' ("pixelcnn") bins differ from exact ones.
    preset = presets.get("test_celeb_a")
    images, _ = data.draw(
        tf.data.Dataset.from_tensor_slices(
            rng.integers(0, 256, size=(6, 16, 16, 3)).astype(np.float32)
        ),
        None,
        seed=0,
    )
    reports, weights = {}, None
    for convention in ("pixelcnn", "exact"):
        model = build_model(dataclasses.replace(preset.model, likelihood_convention=convention))
        if weights is None:
            bias = np.zeros(2 * model.config.latent_size, np.float32)
            bias[[2, 5, 8]] = -6.0  # Red, green, blue log-scales of the one component.
            model.encoder.dense.bias.assign(bias)
            model.encoder.dense.kernel.assign(model.encoder.dense.kernel * 1e-3)
            weights = model.get_weights()
        model.set_weights(weights)
        reports[convention] = likelihood.log_likelihood(
            model, images, 16 * 16 * 3, num_samples=4, batch_size=3, progress=False
        )
    own, other = reports["pixelcnn"], reports["exact"]
    assert own["likelihood_convention"] == "pixelcnn"
    assert other["likelihood_convention"] == "exact"
    for report in (own, other):  # The model's own convention first, both in full.
        assert set(report["by_convention"]) == {"pixelcnn", "exact"}
        assert (
            report["by_convention"][report["likelihood_convention"]]["bits_per_dim"]
            == (report["bits_per_dim"])
        )
    # From the same importance samples, each model reports the other's figure.
    for name in ("pixelcnn", "exact"):
        assert own["by_convention"][name]["bits_per_dim"] == pytest.approx(
            other["by_convention"][name]["bits_per_dim"], rel=1e-6
        )
    # The low-mass bins make a difference (the midpoint rule undercounts a
    # bin in a convex tail: more bits).
    assert own["bits_per_dim"] > other["bits_per_dim"] + 0.01
