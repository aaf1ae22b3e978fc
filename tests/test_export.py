import os
import subprocess
import sys
import textwrap

import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO

from vnca_tf import data, loading
from vnca_tf.configs import RunConfig
from vnca_tf.evaluation import likelihood, reports
from vnca_tf.models import build_model
from vnca_tf.serving.export import export
from vnca_tf.serving.loaded import LoadedModel

SIGNATURES = {
    "serving_default": (["num_samples", "seed"], ["images", "means"]),
    "reconstruct": (["images", "seed"], ["reconstructions", "means"]),
    "encode": (["images"], ["mean", "scale"]),
    "decode": (["latents", "seed"], ["means", "samples"]),
    "log_likelihood": (["images", "k", "seed"], ["log_likelihood"]),
    "grow": (["latents", "seed"], ["frames"]),
    "damage_during_growth": (["latents"], ["frames"]),  # A doubling VNCA's.
}

# Runs in a fresh interpreter that never imports vnca_tf.
CALL_EVERY_SIGNATURE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    path, inputs_path, outputs_path = sys.argv[1:]
    inputs = np.load(inputs_path)
    signatures = tf.saved_model.load(path).signatures
    images = tf.constant(inputs["images"], tf.float32)
    latents = tf.constant(inputs["latents"], tf.float32)
    seed = tf.constant(7, tf.int64)
    out = {}
    for key, value in signatures["serving_default"](num_samples=tf.constant(4), seed=seed).items():
        out["sample/" + key] = value.numpy()
    again = signatures["serving_default"](num_samples=tf.constant(4), seed=seed)["images"]
    out["sample_again"] = again.numpy()
    fresh = [signatures["serving_default"](num_samples=tf.constant(4),
                                           seed=tf.constant(-1, tf.int64))["means"].numpy()
             for _ in range(2)]
    out["fresh_differ"] = np.array(np.any(fresh[0] != fresh[1]))
    for key, value in signatures["reconstruct"](images=images, seed=seed).items():
        out["reconstruct/" + key] = value.numpy()
    for key, value in signatures["encode"](images=images).items():
        out["encode/" + key] = value.numpy()
    for key, value in signatures["decode"](latents=latents, seed=seed).items():
        out["decode/" + key] = value.numpy()
    out["log_likelihood"] = signatures["log_likelihood"](
        images=images, k=tf.constant(20), seed=seed)["log_likelihood"].numpy()
    out["grow"] = signatures["grow"](latents=latents, seed=seed)["frames"].numpy()
    out["damage_during_growth"] = signatures["damage_during_growth"](
        latents=latents)["frames"].numpy()
    errors = []
    for bad in (np.zeros((2, 28, 28, 1), np.float32), np.full(inputs["images"].shape, 0.5,
                                                                np.float32)):
        try:
            signatures["reconstruct"](images=tf.constant(bad), seed=seed)
        except tf.errors.InvalidArgumentError as error:
            errors.append(error.message)
    out["errors"] = np.array(errors)
    out["vnca_tf_imported"] = np.array("vnca_tf" in sys.modules)
    np.savez(outputs_path, **out)
""")


def _trained(name, seed=3):
    model = build_model(presets.get(name).model)
    if model.config.architecture == "vnca":
        kernel = model.update_net.out.kernel
        kernel.assign(tf.random.stateless_normal(kernel.shape, [seed, 0]) * 0.05)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _trained("test_mnist")
    path = export(
        model, presets.get("test_mnist"), str(tmp_path_factory.mktemp("export") / "mnist")
    )
    return model, path


@pytest.mark.slow
def test_saved_model_cli_lists_every_signature(exported):
    _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, (inputs, outputs) in SIGNATURES.items():
        section = result.stdout.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        for key in inputs:
            assert f"inputs['{key}']" in section, (name, key)
        for key in outputs:
            assert f"outputs['{key}']" in section, (name, key)
    assert path.endswith(os.path.join("mnist", "1"))  # The layout TF Serving watches.


@pytest.mark.slow
def test_fresh_process_without_vnca_tf_gets_the_in_memory_outputs(exported, tmp_path, rng):
    model, path = exported
    images = (rng.random((3, 32, 32, 1)) > 0.5).astype(np.float32)
    latents = rng.normal(size=(2, 16)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", images=images, latents=latents)
    script = tmp_path / "call.py"
    script.write_text(CALL_EVERY_SIGNATURE)
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            path,
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "outputs.npz")
    assert not out["vnca_tf_imported"]

    samples, means = model.sample(4, seed=7)
    np.testing.assert_array_equal(out["sample/images"], samples.numpy().astype(np.uint8))
    np.testing.assert_allclose(out["sample/means"], means, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["sample_again"], out["sample/images"])
    assert out["fresh_differ"]
    recon, recon_means = model.reconstruct(images, seed=7)
    np.testing.assert_array_equal(out["reconstruct/reconstructions"], recon.numpy())
    np.testing.assert_allclose(out["reconstruct/means"], recon_means, rtol=1e-5, atol=1e-6)
    posterior = model.encode(images)
    np.testing.assert_allclose(out["encode/mean"], posterior.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["encode/scale"], posterior.stddev(), rtol=1e-5)
    decoded, decoded_means = model.decode_pictures(latents, seed=7)
    np.testing.assert_array_equal(out["decode/samples"], decoded.numpy())
    np.testing.assert_allclose(out["decode/means"], decoded_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out["log_likelihood"], model.iwae(images, 20, seed=7, chunk_size=16), rtol=1e-5
    )
    np.testing.assert_allclose(
        out["grow"], model.growth_frames(latents, seed=7), rtol=1e-5, atol=1e-6
    )
    damaged = out["damage_during_growth"]
    np.testing.assert_allclose(damaged, model.damage_during_growth(latents), rtol=1e-5, atol=1e-6)
    assert damaged.shape == (5, 2, 32, 32, 1)  # Stages 0..4 of test_mnist.
    assert np.abs(damaged[0] - damaged[-1]).max() > 1e-3  # Damage at each stage differs.
    shape_error, value_error = out["errors"]
    assert "images must have shape (batch, 32, 32, 1)" in shape_error
    assert "binary" in value_error


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist_damage", "test_celeb_a", "test_mnist_baseline"])
def test_other_models_export_and_load(name, tmp_path, rng):
    model = _trained(name)
    path = export(model, presets.get(name), str(tmp_path / name), version=3)
    assert path.endswith("3")
    loaded = LoadedModel(path)
    shape = model.config.image_shape
    images = rng.integers(0, int(model.likelihood.max_value) + 1, size=(2,) + shape).astype(
        np.float32
    )
    samples, means = loaded.sample(2, seed=5)
    assert samples.shape == means.shape == (2,) + shape
    np.testing.assert_allclose(
        loaded.encode_mean(images), model.encode_mean(images), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        loaded.iwae(images, 8, 5), model.iwae(images, 8, seed=5, chunk_size=16), rtol=1e-5
    )
    # RGB: the bound in both bin conventions, the model's own first.
    bounds = loaded.iwae_bounds(images, 8, 5)
    assert list(bounds) == list(model.likelihood.conventions)
    for name, bound in model.iwae_bounds(images, 8, seed=5, chunk_size=16).items():
        np.testing.assert_allclose(bounds[name], bound, rtol=1e-5)
    z = rng.normal(size=(2, model.config.latent_size)).astype(np.float32)
    assert loaded.growth_frames(z[:1]).shape[1:] == (1,) + shape
    if model.config.decoder == "non_doubling" and model.config.architecture == "vnca":
        for got, expected in zip(
            loaded.damage_recovery(z, seed=5), model.damage_recovery(z, seed=5), strict=True
        ):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    elif model.config.architecture == "vnca":
        assert loaded.damage_during_growth(z).shape == (4, 2) + shape  # 3 doublings.
    else:
        with pytest.raises(ValueError, match="no damage_recovery signature"):
            loaded.damage_recovery(z)


@pytest.mark.slow
def test_checkpoint_and_saved_model_evaluate_to_the_same_number(tmp_path, data_dir):
    from vnca_tf.training.loop import Trainer
    from vnca_tf.training.run_folder import save_config

    preset = presets.get("test_mnist")
    model_dir = str(tmp_path / "run")
    Trainer(preset, model_dir, run=RunConfig(data_dir=data_dir)).train(5, progress=False)
    save_config(model_dir, preset)
    model, preset, training = loading.restore(model_dir)
    loaded, _ = loading.load_saved_model(
        export(model, preset, str(tmp_path / "export"), training=training)
    )
    assert loaded.training == training and training["steps"] == 5
    images = data.draw_batch(likelihood.split_images(preset, data_dir=data_dir), 8, seed=0)
    bounds = [m.iwae(images, 32, seed=3) for m in (model, loaded)]
    np.testing.assert_allclose(bounds[0], bounds[1], rtol=1e-5)
    # The bound is the model's whatever the chunk (the export picks its own),
    # and an export seeds each image by its place in the request: image ids
    # are refused, not ignored.
    np.testing.assert_allclose(model.iwae(images, 32, seed=3, chunk_size=5), bounds[0], rtol=1e-5)
    with pytest.raises(ValueError, match="image_ids need the model rebuilt"):
        loaded.iwae(images, 32, seed=3, image_ids=tf.range(8))
    # The command line: an export, then a refusal to overwrite it (no traceback).
    command = [
        sys.executable,
        os.path.join(REPO, "export.py"),
        f"--model_dir={model_dir}",
        f"--export_dir={tmp_path / 'cli'}",
    ]
    first, second = (
        subprocess.run(command, capture_output=True, text=True, cwd=REPO) for _ in range(2)
    )
    assert first.returncode == 0 and "Exported test_mnist (step 5)" in first.stdout
    assert second.returncode == 2 and second.stderr.splitlines() == [
        f"Error: {tmp_path / 'cli' / '1'} exists; pick another --version or folder."
    ]
    (tmp_path / "a_file").write_text("")  # A path that is a file: one line.
    into_a_file = subprocess.run(
        command[:3] + [f"--export_dir={tmp_path / 'a_file'}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert into_a_file.returncode == 2
    assert into_a_file.stderr.splitlines() == [
        f"Error: {tmp_path / 'a_file'} is a file; give --export_dir a folder."
    ]


def test_export_refuses_to_overwrite_and_loading_checks_the_folder(exported, tmp_path):
    model, path = exported
    with pytest.raises(FileExistsError, match="another --version"):
        export(model, presets.get("test_mnist"), os.path.dirname(path))
    with pytest.raises(reports.EvaluationError, match="no saved_model.pb"):
        loading.load_saved_model(str(tmp_path))
    signatures = tf.saved_model.load(path).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        signatures["reconstruct"](
            images=tf.zeros([1, 32, 32, 1], tf.int32), seed=tf.constant(1, tf.int64)
        )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"latents must have shape "
        r"\(batch, 16\)",
    ):
        signatures["decode"](latents=tf.zeros([1, 15]), seed=tf.constant(1, tf.int64))
    # Static sizes for saved_model_cli and TF Serving; the batch stays free.
    for name, key, shape in (
        ("reconstruct", "images", [None, 32, 32, 1]),
        ("log_likelihood", "images", [None, 32, 32, 1]),
        ("decode", "latents", [None, 16]),
        ("grow", "latents", [None, 16]),
    ):
        assert signatures[name].structured_input_signature[1][key].shape.as_list() == shape
    seed = tf.constant(1, tf.int64)
    for value in (np.nan, np.inf):
        with pytest.raises(tf.errors.InvalidArgumentError, match="latents must be finite"):
            signatures["decode"](latents=tf.fill([2, 16], value), seed=seed)
        with pytest.raises(tf.errors.InvalidArgumentError, match="images must be finite"):
            signatures["encode"](images=tf.fill([1, 32, 32, 1], value))


def _valid_inputs(signature, model):
    """Inputs a signature accepts: one of each, of the model's sizes."""
    config = model.config
    grid = (2, 2) if config.decoder == "doubling" else tuple(config.image_shape[:2])
    values = {
        "images": tf.zeros([1, *config.image_shape]),
        "latents": tf.zeros([1, config.latent_size]),
        "cells": tf.zeros([1, *grid, config.latent_size]),
        "mask": tf.ones([1, *grid, 1]),
        "seed": tf.constant(1, tf.int64),
        "num_samples": tf.constant(1),
        "k": tf.constant(2),
    }
    return {key: values[key] for key in signature.structured_input_signature[1]}


_PEAK_MEMORY = textwrap.dedent("""
    import resource, sys
    import tensorflow as tf
    signatures = tf.saved_model.load(sys.argv[1]).signatures
    seed = tf.constant(0, tf.int64)
    def requests(batch):  # The caps: 1,024 images at k = 1, 1,024 latents grown.
        images, k = tf.zeros([batch, 32, 32, 1]), tf.constant(1)
        signatures["log_likelihood"](images=images, k=k, seed=seed)
        signatures["grow"](latents=tf.zeros([batch, 16]), seed=seed)
    requests(2)  # Traced and warm: what follows is the requests' own memory.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    requests(1024)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
""")


@pytest.mark.slow
def test_requests_at_the_caps_stay_within_their_memory(exported):
    # log_likelihood decodes at most 1,024 grids at once (its chunk follows k:
    # 16,384 before, whatever k), grow keeps only the likelihood's channel of
    # each frame (all 16 before): 343 and 387 MB here, 5,401 and 2,260 before.
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY, exported[1]], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mb = float(result.stdout.split()[-1])
    assert peak_mb < 1000, f"a request at the caps took {peak_mb:.0f} MB more"
    # One importance sample past the cap of k x images is refused before any work.
    log_likelihood = tf.saved_model.load(exported[1]).signatures["log_likelihood"]
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"k x the batch of images must be in \[1, 262,144\]"
    ):
        log_likelihood(
            images=tf.zeros([1024, 32, 32, 1]), k=tf.constant(257), seed=tf.constant(0, tf.int64)
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage"])
def test_every_signature_refuses_non_finite_inputs_and_out_of_range_counts(name, tmp_path):
    model = _trained(name)
    signatures = tf.saved_model.load(export(model, presets.get(name), str(tmp_path))).signatures
    assert len(signatures) == (12 if name == "test_mnist" else 11)
    for signature_name, signature in signatures.items():
        inputs = _valid_inputs(signature, model)
        signature(**inputs)  # Valid inputs pass.
        for key, value in inputs.items():
            if value.dtype == tf.float32:  # A NaN and an infinity in each float input.
                for bad in (np.nan, np.inf):
                    broken = value.numpy().copy()
                    broken.flat[0] = bad
                    with pytest.raises(
                        tf.errors.InvalidArgumentError,
                        match=f"{key} must (be finite|be binary|hold 0 or 1)",
                    ):
                        signature(**{**inputs, key: tf.constant(broken)})
            elif key in ("num_samples", "k"):  # Counts: none, negative, huge.
                for bad in (0, -3, 10**6):
                    with pytest.raises(
                        tf.errors.InvalidArgumentError,
                        match=r"(num_samples|k)\b.* must be in \[1, ",
                    ):
                        signature(**{**inputs, key: tf.constant(bad)})
            if key in ("images", "latents", "cells") and signature_name != "serving_default":
                many = tf.repeat(value, 1025, axis=0)  # One more than a call may hold.
                extra = (
                    {"mask": tf.repeat(inputs["mask"], 1025, axis=0)} if "mask" in inputs else {}
                )
                with pytest.raises(
                    tf.errors.InvalidArgumentError,
                    match=rf"the batch of {key} must be in \[1, 1,024\]",
                ):
                    signature(**{**inputs, key: many, **extra})
