"""The trained models in saved_models/: they load, sample, grow, recover from
damage, and measure what their results.json says."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO

from vnca_tf import data, loading
from vnca_tf.evaluation import healing
from vnca_tf.serving.loaded import LoadedModel

SHIPPED = sorted(glob.glob(os.path.join(REPO, "saved_models", "*", "1")))
NAMES = [os.path.basename(os.path.dirname(path)) for path in SHIPPED]
# Of each shipped model's images, those measured again (IWAE-128): each bound
# comes from the seed and the image's index, so four to 0.01 nats show any
# change of the model or the estimator.
NUM_EXAMPLES = 4
# Whole-image error after regrowth over that right after the damage, for the
# latents and seed of test_shipped_model_samples_grows_and_repairs_damage.
RECOVERED_OVER_DAMAGED = {
    "mnist_damage_cpu": 0.736,
    "mnist_heal_cpu": 0.425,
    "mnist_regrow_cpu": 0.444,
    "mnist_regrow_long_cpu": 0.322,
}


def test_the_doubling_and_the_damage_recovery_model_ship():
    assert {
        "mnist_cpu",
        "mnist_damage_cpu",
        "mnist_heal_cpu",
        "mnist_regrow_cpu",
        "mnist_regrow_long_cpu",
    } <= set(NAMES)


@pytest.mark.slow
def test_the_demo_model_regrows_two_thirds_of_the_damage(data_dir):
    # On 100 test images drawn with the seed: encoded, grown for max_steps, a
    # 14x14 square zeroed, max_steps more: at most a third of the error inside
    # the square is left (the shipped figure), with other damage too.
    path = os.path.join(REPO, "saved_models", "mnist_regrow_long_cpu", "1")
    assert _results(path)["healing"]["recovered_over_damaged"] <= 1 / 3
    model = LoadedModel(path)
    test = data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=28)
    images = data.draw_batch(test, 100, seed=0)
    for seed in (1, 2):
        healed = healing.healing(model, images, seed=seed)
        assert healed["recovered_error"] <= healed["damaged_error"] / 3, (seed, healed)


def _results(path):
    with open(os.path.join(os.path.dirname(path), "results.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("path", SHIPPED, ids=NAMES)
def test_results_say_how_the_model_was_trained_and_measured(path):
    results = _results(path)
    name = os.path.basename(os.path.dirname(path))
    preset = presets.get(results["preset"])
    assert results["preset"] == name
    assert results["protocol"] == {
        "dataset": "binarized_mnist",
        "split": "test",
        "num_samples": 128,
        "model_source": f"saved_models/{name}/1",
        "checkpoint": "saved_model",
        "overrides": [],
    }
    subset = results["subset"]
    assert subset["of"] == 10_000 and subset["count"] == results["num_examples"] >= 500
    assert subset["seed"] == results["seed"] == 0 and subset["how"].startswith("uniformly")
    assert results["num_dimensions"] == 784
    assert results["bits_per_dim"] == pytest.approx(
        -results["log_likelihood_nats"] / (784 * np.log(2))
    )
    per_image = results["per_image"]
    assert len(per_image["index"]) == len(set(per_image["index"])) == results["num_examples"]
    assert np.mean(per_image["log_likelihood_nats"]) == pytest.approx(
        results["log_likelihood_nats"], abs=1e-3
    )
    training = results["training"]
    assert training["steps"] == preset.train.num_steps and training["wall_time_s"] > 0
    assert training["command"].startswith(f"python train.py --preset={preset.name}")
    # A trained model beats coin flips (784 ln 2 = 543 nats) by far.
    assert -300 < results["log_likelihood_nats"] < -60
    if preset.model.decoder == "non_doubling":
        assert results["healing"]["num_images"] == 100
        assert results["healing"]["region"].startswith("inside the erased square")


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=NAMES)
def test_each_shipped_bound_is_measured_again_to_the_same_number(path, data_dir):
    # Every image's bound comes from the seed and its index in the split: the
    # first shipped images, measured again, give their shipped numbers (float
    # rounding apart), so a change of the model or the estimator shows at once.
    shipped = _results(path)
    model, preset, _ = loading.restore_saved_model(path)
    size = preset.model.image_shape[0]
    test = data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=size)
    every = np.concatenate([batch.numpy() for batch in test.batch(10_000)])
    index = np.asarray(shipped["per_image"]["index"][:NUM_EXAMPLES])
    bounds = model.iwae(every[index], 128, seed=shipped["seed"], image_ids=tf.constant(index))
    np.testing.assert_allclose(
        bounds.numpy(), shipped["per_image"]["log_likelihood_nats"][:NUM_EXAMPLES], atol=0.01
    )
    if preset.model.decoder == "non_doubling":  # The same images and seed: the same figure.
        images = data.draw_batch(test, shipped["healing"]["num_images"], shipped["seed"])
        healed = healing.healing(model, images, seed=shipped["seed"])
        for key in ("damaged_error", "recovered_error"):
            assert healed[key] == pytest.approx(shipped["healing"][key], rel=1e-4)


@pytest.mark.slow
def test_evaluate_cli_measures_an_export_as_the_library_does(data_dir, tmp_path):
    path = os.path.join(REPO, "saved_models", "mnist_regrow_long_cpu", "1")
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "evaluate.py"),
            f"--saved_model={path}",
            f"--data_dir={data_dir}",
            "--max_examples=4",
            "--num_samples=8",
            "--seed=3",
            f"--output_dir={tmp_path}",
            "--figures=samples,growth,damage_recovery",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.load(open(tmp_path / "results.json"))
    assert measured["protocol"]["checkpoint"] == "saved_model"
    assert measured["training"] == _results(path)["training"]
    assert measured["healing"]["images"] == "100 of the 10,000 test images, drawn with seed 3"
    assert "Inside the erased square the images are off by" in result.stdout
    for name in ("samples", "growth", "damage_recovery"):
        assert os.path.getsize(tmp_path / f"{name}.png") > 2000
    model, _, _ = loading.restore_saved_model(path)
    test = data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=28)
    index = measured["per_image"]["index"]
    every = np.concatenate([batch.numpy() for batch in test.batch(10_000)])
    bounds = model.iwae(every[index], 8, seed=3, image_ids=tf.constant(index))
    np.testing.assert_allclose(bounds, measured["per_image"]["log_likelihood_nats"], atol=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=NAMES)
def test_shipped_model_samples_grows_and_repairs_damage(path, rng):
    model = LoadedModel(path)
    height, width, _ = model.config.image_shape
    samples, means = model.sample(8, seed=1)
    assert samples.shape == means.shape == (8, height, width, 1)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert 0.02 < float(np.mean(means)) < 0.5  # Digits: mostly background, some ink.
    z = rng.normal(size=(4, model.config.latent_size)).astype(np.float32)
    frames = model.growth_frames(z, seed=1)
    assert frames.shape[1:] == (4, height, width, 1) and np.isfinite(frames).all()
    if model.config.decoder == "non_doubling":
        grown, damaged, recovered = (np.asarray(x) for x in model.damage_recovery(z, seed=1))
        # Regrowth brings the damaged images back towards what was grown, by
        # as much as it did when the model shipped.
        ratio = np.abs(recovered - grown).mean() / np.abs(damaged - grown).mean()
        name = os.path.basename(os.path.dirname(path))
        assert ratio == pytest.approx(RECOVERED_OVER_DAMAGED[name], abs=0.02)
    else:
        damaged = np.asarray(model.damage_during_growth(z))
        assert damaged.shape == (model.config.num_doublings + 1, 4, height, width, 1)
        assert np.isfinite(damaged).all()
