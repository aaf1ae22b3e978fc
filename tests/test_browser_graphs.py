"""The browser's step-by-step graphs grow what the model grows; they travel in
the SavedModel, convert from it, and the demo's server lists the converted
models."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO

from vnca_tf import loading
from vnca_tf.configs.kinds import BROWSER_GRAPHS
from vnca_tf.models import build_model
from vnca_tf.serving import browser_graphs, demo_server, export, tfjs


def _model(name, **changes):
    config = dataclasses.replace(presets.get(name).model, **changes)
    keras.utils.set_random_seed(0)  # The same weights every run (see the std check).
    model = build_model(config)
    for weight in model.update_net.weights:  # Past the zero-initialised last layer.
        weight.assign(tf.random.stateless_normal(weight.shape, [1, len(weight.name)]) * 0.05)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage"])
def test_step_by_step_growth_equals_the_models(name, tmp_path, rng):
    # Every cell updates (probability 1): the page's masks are then all ones.
    model = _model(name, update_probability=1.0)
    config = model.config
    # Through the exported SavedModel's browser_NAME signatures.
    preset = dataclasses.replace(presets.get(name), model=config)
    signatures = tf.saved_model.load(export.export(model, preset, str(tmp_path))).signatures
    prefix = browser_graphs.SIGNATURE_PREFIX
    graphs = {n[len(prefix) :]: f for n, f in signatures.items() if n.startswith(prefix)}
    doubling = config.decoder == "doubling"
    assert set(graphs) == set(BROWSER_GRAPHS) - (set() if doubling else {"double"})
    images = (rng.random((2, *config.image_shape)) > 0.5).astype(np.float32)
    latents = graphs["encode"](images=tf.constant(images))["latents"]
    np.testing.assert_allclose(latents, model.encode_mean(images), rtol=1e-5, atol=1e-6)

    cells = graphs["initial_cells"](latents=latents)["cells"]
    stages = config.num_doublings + 1 if doubling else 1
    steps = config.steps_per_stage if doubling else 4
    for stage in range(stages):
        if stage:
            cells = graphs["double"](cells=cells)["cells"]
        for _ in range(steps):
            mask = tf.ones([*cells.shape[:3], 1])
            cells = graphs["step"](cells=cells, mask=mask)["cells"]
    image = graphs["picture"](cells=cells)["image"]
    expected = model.growth_frames(latents, seed=0, num_steps=None if doubling else steps)[-1]
    assert image.shape == (2, *config.image_shape)
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-5)
    # A picture, not a constant (the seeded weights give a std of 0.017 and 0.0011).
    assert float(tf.math.reduce_std(image)) > 1e-4

    # A zero mask leaves the cells as they are.
    still = graphs["step"](cells=cells, mask=tf.zeros([*cells.shape[:3], 1]))["cells"]
    np.testing.assert_array_equal(still, cells)


@pytest.mark.slow
def test_only_binary_vncas_have_browser_graphs(tmp_path):
    model = build_model(presets.get("test_celeb_a").model)
    with pytest.raises(ValueError, match="binary images"):
        browser_graphs.functions(model)
    assert browser_graphs.signatures(model) == {}
    # Conversion says so before it looks for a converter.
    path = export.export(model, presets.get("test_celeb_a"), str(tmp_path / "sm"))
    with pytest.raises(ValueError, match="binary images"):
        tfjs.convert(path, str(tmp_path / "js"), converter=str(tmp_path / "none"))


def test_the_server_lists_the_best_regrowing_model_first(tmp_path):
    def manifest(folder, name, doubles_after, ratio=None):
        (tmp_path / folder / name).mkdir(parents=True)
        results = {"healing": {"recovered_over_damaged": ratio}} if ratio else {}
        (tmp_path / folder / name / demo_server.MANIFEST).write_text(
            json.dumps({"schedule": {"doubles_after": doubles_after}, "results": results})
        )

    manifest("models", "a_doubling", [8, 16, 24, 32])
    manifest("models", "b_regrows", [], 0.7)
    manifest("models", "c_heals", [], 0.3)
    manifest("my_models", "a_mine", [])
    manifest("my_models", "b_mine", [8, 16, 24, 32])
    (tmp_path / "models" / "not_a_model").mkdir()
    (tmp_path / "my_models" / "broken").mkdir()  # A manifest cut short: listed last, why.
    (tmp_path / "my_models" / "broken" / demo_server.MANIFEST).write_text('{"preset": {')
    models = demo_server.list_models(str(tmp_path))
    assert [model["path"] for model in models] == [
        "models/c_heals",
        "models/b_regrows",
        "my_models/a_mine",
        "models/a_doubling",
        "my_models/b_mine",
        "my_models/broken",
    ]
    assert [model["error"] for model in models[:-1]] == [None] * 5
    assert models[-1]["error"].startswith(
        "my_models/broken/vnca.json does not read: JSONDecodeError: Expecting"
    )
    assert demo_server.list_models(str(tmp_path / "nothing")) == []


def test_serve_demo_skips_a_corrupt_manifest_and_refuses_bad_addresses(tmp_path):
    broken = os.path.join(demo_server.WEB_ROOT, "my_models", "vnca_test_broken")
    os.makedirs(broken)
    try:
        with open(os.path.join(broken, demo_server.MANIFEST), "w") as f:
            f.write("not json")
        server = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "serve_demo.py"), "--port=0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout.readline().startswith("Serving the demo at http://localhost:")
        finally:
            server.terminate()
            _, err = server.communicate(timeout=30)
        assert err.splitlines()[0].startswith(
            "Warning: skipped my_models/vnca_test_broken: my_models/vnca_test_broken/vnca.json "
            "does not read: JSONDecodeError: "
        )
    finally:
        shutil.rmtree(broken)
    for flags, words in (
        (["--port=70000"], "--port must be in [0, 65535]"),
        (["--host=nohost.invalid"], "Cannot serve on nohost.invalid:8000"),
    ):
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "serve_demo.py"), *flags],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and result.stderr.startswith(f"Error: {words}"), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_a_missing_converter_says_how_to_make_it(tmp_path):
    preset = presets.get("test_mnist_damage")
    path = export.export(build_model(preset.model), preset, str(tmp_path / "sm"))
    with pytest.raises(FileNotFoundError, match="web/make_converter_env.sh"):
        tfjs.convert(path, str(tmp_path / "js"), converter=str(tmp_path / "none"))


@pytest.mark.slow
def test_an_older_export_gains_the_browser_signatures(tmp_path, monkeypatch):
    preset = presets.get("test_mnist_damage")
    model = _model("test_mnist_damage")
    with monkeypatch.context() as patch:  # An export from before the browser graphs.
        patch.setattr(browser_graphs, "signatures", lambda model: {})
        old = export.export(model, preset, str(tmp_path / "old"))
    assert not any(n.startswith("browser_") for n in tf.saved_model.load(old).signatures)
    rebuilt, rebuilt_preset, _ = loading.restore_saved_model(old)
    assert rebuilt_preset == preset
    new = tf.saved_model.load(export.export(rebuilt, rebuilt_preset, str(tmp_path / "new")))
    assert "browser_step" in new.signatures
    latents = tf.random.stateless_normal([2, preset.model.latent_size], [3, 4])
    seed = tf.constant(5, tf.int64)
    frames = [
        tf.saved_model.load(old).signatures["grow"](latents=latents, seed=seed)["frames"],
        new.signatures["grow"](latents=latents, seed=seed)["frames"],
    ]
    np.testing.assert_array_equal(frames[0], frames[1])  # The same weights.


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_dir=runs/x", "--saved_model=saved_models/x/1", "--tfjs=y"], "one source"),
        (["--saved_model=saved_models/x/1"], "--export_dir"),
        (["--saved_model=nowhere/1", "--tfjs=y"], "not a SavedModel folder"),
        (["--saved_model=nowhere/1", "--tfjs=y", "--checkpoint=best"], "holds one set"),
    ],
)
def test_export_cli_says_what_is_wrong(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "export.py"), *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y").exists()
