"""vnca_tf.load from each kind of source, VNCA.from_preset, Keras' own .keras
files for every model kind, and config overrides from the command line."""

import dataclasses
import inspect
import json
import os
import subprocess
import sys

import keras
import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import REPO, count_params, train_tiny

import vnca_tf
from vnca_tf import loading
from vnca_tf.configs import overrides
from vnca_tf.models import build_model, encoder, layers, nca, storage
from vnca_tf.models.baselines import ConvBaseline
from vnca_tf.models.interface import GenerativeModel
from vnca_tf.models.vnca import VNCA
from vnca_tf.serving.export import export
from vnca_tf.serving.loaded import LoadedModel

KINDS = ["test_mnist", "test_mnist_damage", "test_mnist_baseline", "test_celeb_a"]


def _shuffled_weights(model, seed=0):
    """Gives every weight random values (an untrained NCA leaves its cells as
    they are, so fresh weights would hide a weight that is not restored)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(0.05 * rng.standard_normal(weight.shape).astype(np.float32))


def _outputs(model, images):
    """What the interface computes, for the same seeds."""
    return [
        model.sample(3, seed=5)[1],
        model.reconstruct(images, seed=6)[1],
        model.encode_mean(images),
        model.iwae(images, num_samples=2, seed=7),
    ]


def _images(config, rng):
    shape = (2, *config.image_shape)
    if config.likelihood == "bernoulli":
        return (rng.random(shape) > 0.5).astype(np.float32)
    return rng.integers(0, 256, shape).astype(np.float32)


@pytest.mark.parametrize("name", KINDS)
def test_every_model_kind_round_trips_through_a_keras_file(name, tmp_path, rng):
    model = build_model(presets.get(name).model)
    _shuffled_weights(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model) and loaded.config == model.config
    also = vnca_tf.load(str(tmp_path / "model.keras"))  # What the project saves, it loads.
    assert type(also) is type(model) and also.config == model.config and also.preset is None
    for mine, theirs in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    images = _images(model.config, rng)
    for mine, theirs in zip(_outputs(model, images), _outputs(loaded, images), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_every_model_takes_the_interfaces_arguments():
    # A VNCA, a baseline and an export answer GenerativeModel's methods with
    # (at least) its arguments; only the damage a kind does not have is missing.
    damage = {"damage_recovery", "damaged_region", "damage_during_growth"}
    for kind in (VNCA, ConvBaseline, LoadedModel):
        for name, method in vars(GenerativeModel).items():
            if name.startswith("_") or not inspect.isfunction(method):
                continue
            if not hasattr(kind, name):
                assert kind is ConvBaseline and name in damage, (kind, name)
                continue
            theirs = inspect.signature(getattr(kind, name)).parameters
            ours = inspect.signature(method).parameters
            for argument in ours:
                assert argument in theirs, f"{kind.__name__}.{name} lacks {argument}"
            for argument, parameter in theirs.items():  # Called as the interface says.
                assert argument in ours or parameter.default is not inspect.Parameter.empty
    # An export grows for its full count: it takes no num_steps it would ignore.
    assert "num_steps" not in inspect.signature(LoadedModel.growth_frames).parameters


def test_the_layers_are_registered_and_rebuild_from_their_config():
    update_net = layers.UpdateNet(16, 8, "small", num_hidden_layers=1, name="update_net")
    originals = [
        encoder.Encoder(16, 4),
        layers.Residual(8),
        update_net,
        layers.Doubling(),
        nca.DoublingNCA(update_net, 3, 2, update_probability=0.5),
        nca.NonDoublingNCA(update_net, (8, 8), 3, 5),
    ]
    for layer in originals:
        serialized = keras.saving.serialize_keras_object(layer)
        assert serialized["registered_name"] == f"vnca_tf>{type(layer).__name__}"
        rebuilt = keras.saving.deserialize_keras_object(serialized)
        assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()


def test_from_preset_builds_the_papers_model_and_refuses_a_baseline():
    model = vnca_tf.VNCA.from_preset("mnist")
    assert count_params(model) == 1_182_208 + 5_402_880  # As test_model pins it.
    with pytest.raises(ValueError, match="convolutional baseline, not a VNCA.*build_model"):
        vnca_tf.VNCA.from_preset("mnist_baseline")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    return train_tiny("test_mnist_damage", str(tmp_path_factory.mktemp("run")), data_dir, 4)


@pytest.mark.slow
def test_load_takes_a_run_an_export_its_folder_and_a_shipped_name(run_dir, tmp_path, rng):
    latest, best = vnca_tf.load(run_dir), vnca_tf.load(run_dir, checkpoint="best")
    assert latest.preset.name == "test_mnist_damage"
    export(latest, latest.preset, str(tmp_path / "exports"), version=3)
    images = _images(latest.config, rng)
    expected = _outputs(latest, images)
    for source in (str(tmp_path / "exports" / "3"), str(tmp_path / "exports")):
        for mine, theirs in zip(expected, _outputs(vnca_tf.load(source), images), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(expected, _outputs(best, images), strict=True):
        np.testing.assert_array_equal(mine, theirs)  # 4 steps: the best is the last.
    shipped = vnca_tf.load("mnist_regrow_long_cpu")
    assert shipped.preset.name == "mnist_regrow_long_cpu"
    z = tf.random.stateless_normal([2, shipped.config.latent_size], [0, 1])
    assert shipped.damage_recovery(z, seed=0)[2].shape == (2, *shipped.config.image_shape)


def test_load_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="'mnsit_cpu' is not a file or folder") as missing:
        vnca_tf.load("mnsit_cpu")
    listed = str(missing.value).split("Shipped models: ")[1].split(";")[0].split(", ")
    assert listed == sorted(os.listdir(os.path.join(REPO, "saved_models")))  # Each once.
    assert "or a Keras file (NAME.keras)" in str(missing.value)
    (tmp_path / "ckpt-5.index").write_text("")
    with pytest.raises(FileNotFoundError, match="ckpt-5.index is a file, but not a Keras file"):
        vnca_tf.load(str(tmp_path / "ckpt-5.index"))
    with pytest.raises(FileNotFoundError, match="holds no model"):
        vnca_tf.load(str(tmp_path))


def _checkpoint_of(config, folder):
    """A checkpoint of a model built from ``config`` with random weights."""
    model = build_model(config)
    _shuffled_weights(model)
    return model, tf.train.Checkpoint(model=model).write(str(folder / "ckpt"))


def test_weights_load_completely_or_are_refused_naming_fields_and_variables(tmp_path):
    fewer = presets.get("test_mnist").model  # One residual block.
    config = dataclasses.replace(fewer, num_residual_blocks=2)
    trained, path = _checkpoint_of(config, tmp_path)
    # Every variable read, and read values equal the trained ones.
    same = build_model(config)
    storage.read_weights(same, path, config)
    for mine, theirs in zip(same.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # A block fewer: the shapes all fit, but the checkpoint's last block has no place.
    truncated = build_model(fewer)
    before = [weight.numpy() for weight in truncated.weights]
    refusals = [
        (
            truncated,
            config,
            r"changed num_residual_blocks \(2 there, 1 here\); 4 of its "
            r"variables have no place in the model: model/update_net/body_1/inner/_kernel",
        ),
        (truncated, None, r"fit this model; 4 of its variables have no place"),
        (
            build_model(dataclasses.replace(config, hidden_size=8)),
            config,
            r"changed hidden_size \(16 there, 8 here\); \d+ variables differ in shape: "
            r"model/update_net/perceive/_kernel \(3, 3, 16, 16\) there, \(3, 3, 16, 8\) here",
        ),
        (
            build_model(dataclasses.replace(config, encoder_input="unit_interval")),
            config,
            r"changed encoder_input \(likelihood_scale there, unit_interval here\)\. A trained",
        ),
    ]
    for model, trained_config, message in refusals:
        with pytest.raises(storage.WeightsMismatchError, match=message):
            storage.read_weights(model, path, trained_config)
    for weight, value in zip(truncated.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)  # Nothing was read.
    # A block more than the checkpoint: the model's last block is not in it.
    _, fewer_path = _checkpoint_of(fewer, tmp_path / "fewer")
    with pytest.raises(
        storage.WeightsMismatchError, match="4 of the model's variables are not in it"
    ):
        storage.read_weights(build_model(config), fewer_path)
    # What keeps the weights loads: the steps, the update rate, the bins' convention.
    retuned = dataclasses.replace(config, steps_per_stage=3, update_probability=0.5)
    storage.read_weights(build_model(retuned), path, config)


@pytest.mark.slow
def test_a_change_that_does_not_keep_the_weights_is_refused_by_every_script(tmp_path):
    shipped = os.path.join("saved_models", "mnist_cpu", "1")
    with pytest.raises(storage.WeightsMismatchError, match="changed num_residual_blocks"):
        loading.restore_saved_model(shipped, ["model.num_residual_blocks=1"])
    for script, flags in [
        ("evaluate.py", [f"--saved_model={shipped}", "--skip_likelihood", "--figures="]),
        ("export.py", [f"--saved_model={shipped}", f"--export_dir={tmp_path / 'export'}"]),
        (
            "train.py",
            [
                presets.flag("test_mnist"),
                f"--init_from={shipped}",
                f"--model_dir={tmp_path / 'run'}",
            ],
        ),
    ]:
        result = _script(script, *flags, "--config.model.num_residual_blocks=1")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and lines[-1].startswith("Error: The weights in"), lines
        assert "num_residual_blocks (2 there, 1 here)" in lines[-1], lines


def test_overrides_parse_by_type_and_refuse_what_is_not_a_field():
    preset = presets.get("test_mnist_damage")
    changed, run = overrides.apply(
        preset,
        vnca_tf.configs.RunConfig(),
        ["model.update_probability=0.25", "model.max_steps=9", "train.learning_rate_drops=4,8"],
    )
    assert changed.model.update_probability == 0.25 and changed.model.max_steps == 9
    assert changed.train.learning_rate_drops == (4, 8) and run == vnca_tf.configs.RunConfig()
    assert build_model(changed.model).decoder.update_probability == 0.25
    for bad, message in [
        ("model.update_probabilty=0.5", "no field 'update_probabilty' .did you mean update_prob"),
        ("model.update_probability=2", "update_probability must be in"),
        ("model.hidden_size=abc", "expected a whole number, got 'abc'"),
        ("model.recompute=yes", "ModelConfig has no field 'recompute'"),
        ("foo.x=1", "unknown section 'foo'"),
        ("model", "write --config.SECTION.FIELD=VALUE"),
    ]:
        with pytest.raises(ValueError, match=message):
            overrides.apply(preset, vnca_tf.configs.RunConfig(), [bad])
    with pytest.raises(ValueError, match=r"--config.train.\* does not apply here"):
        overrides.apply(preset, vnca_tf.configs.RunConfig(), ["train.beta=2"], ("model",))


def _script(name, *flags):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, name), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_an_override_lands_in_the_model_config_json_and_the_header(tmp_path, data_dir):
    result = _script(
        "train.py",
        presets.flag("test_mnist_damage"),
        f"--model_dir={tmp_path}",
        f"--data_dir={data_dir}",
        "--num_steps=1",
        "--config.model.update_probability=0.25",
        "--config.train.clip_norm=2",
    )
    assert result.returncode == 0, result.stderr
    overridden = "overrides: model.update_probability=0.25, train.clip_norm=2"
    assert overridden in result.stdout.splitlines()[0]
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["model"]["update_probability"] == 0.25 and saved["train"]["clip_norm"] == 2
    assert saved["run"]["overrides"] == ["model.update_probability=0.25", "train.clip_norm=2"]
    assert vnca_tf.load(str(tmp_path)).decoder.update_probability == 0.25
    bad = _script("train.py", presets.flag("test_mnist"), "--config.model.hidden_size=-3")
    assert bad.returncode == 2 and bad.stdout == ""  # A usage error, as absl's.
    assert bad.stderr.strip() == "Error: model.hidden_size=-3: hidden_size must be >= 1, got -3."
    refused = _script("evaluate.py", f"--model_dir={tmp_path}", "--config.train.beta=2")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "Error: --config.train.* does not apply here; this script takes --config.model.*."
    )
