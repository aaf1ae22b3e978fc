import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import quiet_preset

from vnca_tf import data
from vnca_tf.configs import RunConfig
from vnca_tf.models import build_model
from vnca_tf.training.loop import Trainer


def _pair(name):
    """The same weights in float32 and in mixed_bfloat16."""
    config = presets.get(name).model
    full, mixed = build_model(config, "float32"), build_model(config, "mixed_bfloat16")
    kernel = full.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [4, 2]) * 0.02)
    mixed.set_weights(full.get_weights())
    return full, mixed


def test_mixed_precision_computes_in_bfloat16_and_keeps_float32_state():
    _, mixed = _pair("test_mnist")
    assert mixed.update_net.perceive.compute_dtype == "bfloat16"
    assert mixed.update_net.perceive.kernel.dtype == "float32"
    cells = mixed.decode_cells(tf.zeros([2, 16]))
    assert cells.dtype == tf.float32


@pytest.mark.parametrize("name", ["test_mnist", "test_celeb_a"])
def test_mixed_precision_log_likelihood_is_within_a_tenth_of_a_percent(name, data_dir):
    full, mixed = _pair(name)
    size = full.config.image_shape[0]
    dataset = "binarized_mnist" if name == "test_mnist" else "celeb_a"
    images = next(
        iter(data.load_split(dataset, "test", data_dir=data_dir, image_size=size).batch(32))
    )
    values = [m.iwae(images, 16, seed=3).numpy().mean() for m in (full, mixed)]
    assert abs(values[1] - values[0]) / abs(values[0]) < 1e-3, values


@pytest.mark.slow
def test_a_mixed_precision_run_tracks_the_float32_run(tmp_path, data_dir):
    preset = quiet_preset("test_mnist")
    images = data.load_split("binarized_mnist", "test", data_dir=data_dir).take(128).cache()
    losses = []
    for precision in ("float32", "mixed_bfloat16"):
        trainer = Trainer(
            preset,
            str(tmp_path / precision),
            dataset=images,
            validation_dataset=images,
            run=RunConfig(precision=precision),
        )
        before = trainer.validation_loss()
        trainer.train(15, progress=False)
        losses.append((before, trainer.validation_loss()))
    (before32, after32), (before16, after16) = losses
    assert before16 == pytest.approx(before32, rel=1e-3)
    assert after32 < before32 - 50  # Training moved the loss ...
    assert after16 == pytest.approx(after32, rel=0.02)  # ... the same way in bfloat16.


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="Unknown precision 'float8'"):
        build_model(presets.get("test_mnist").model, "float8")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage"])
def test_recompute_gives_the_same_loss_and_gradients(name, rng):
    config = presets.get(name).model
    plain, recomputed = build_model(config), build_model(config, recompute=True)
    kernel = plain.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [5, 2]) * 0.05)
    recomputed.set_weights(plain.get_weights())
    x = (rng.random((4, *config.image_shape)) > 0.5).astype(np.float32)
    results = []
    for model in (plain, recomputed):

        @tf.function
        def loss_and_gradients(x, model=model):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.negative_elbo(x, seed=tf.constant([1, 2]))["loss"])
            return loss, tape.gradient(loss, model.trainable_variables)

        results.append(loss_and_gradients(x))
    (loss, grads), (loss_r, grads_r) = results
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    for g, g_r in zip(grads, grads_r, strict=True):
        assert np.abs(g).max() > 0
        np.testing.assert_allclose(g_r, g, rtol=1e-4, atol=1e-6)


def test_recompute_is_refused_for_the_baseline():
    with pytest.raises(ValueError, match="the convolutional baseline has none"):
        build_model(presets.get("test_mnist_baseline").model, recompute=True)


def test_dynamic_loss_scale_halves_on_overflow_and_grows_after_finite_steps():
    from vnca_tf.training.loss_scale import DynamicLossScale

    scale = DynamicLossScale(True, initial=8.0, growth_interval=3, minimum=0.25)
    assert bool(scale.is_overflow(tf.constant(False)))
    scale.update(tf.constant(False))
    assert float(scale.scale.numpy()) == 4.0
    for _ in range(3):
        scale.update(tf.constant(True))
    assert float(scale.scale.numpy()) == 8.0 and int(scale.finite_steps.numpy()) == 0
    for _ in range(3):
        scale.update(tf.constant(False))
    assert float(scale.scale.numpy()) == 1.0 and not bool(scale.is_overflow(tf.constant(False)))
    for _ in range(4):  # Below 1 it still halves, but a skip counts as non-finite ...
        scale.update(tf.constant(False))
    assert float(scale.scale.numpy()) == 0.25  # ... and never below the minimum ...
    assert not bool(scale.is_overflow(tf.constant(False)))  # ... where NaN is NaN.
    assert DynamicLossScale(True).minimum == 2.0**-14
    off = DynamicLossScale(False)
    off.update(tf.constant(False))
    assert float(off.scale.numpy()) == 1.0


@pytest.mark.slow
def test_float16_training_lowers_the_loss_scale_instead_of_stopping(tmp_path, data_dir):
    preset = quiet_preset(
        "test_mnist",
        max_nonfinite=2,
    )
    images = data.load_split("binarized_mnist", "test", data_dir=data_dir).take(128).cache()
    trainer = Trainer(
        preset,
        str(tmp_path),
        dataset=images,
        validation_dataset=images,
        run=RunConfig(precision="mixed_float16"),
    )
    assert trainer.state.model.update_net.perceive.compute_dtype == "float16"
    before = trainer.validation_loss()
    metrics = trainer.train(25, progress=False)
    # Losses of hundreds of nats times 2^15 overflow float16 in the first steps:
    # more than max_nonfinite of them in a row lowered the scale instead of
    # stopping the run, and the remaining updates trained the model.
    skipped = int(trainer.state.nonfinite_total.numpy())
    assert skipped > 2 and int(trainer.state.nonfinite_in_a_row.numpy()) == 0
    assert metrics["loss_scale"] == 2.0 ** (15 - skipped)
    assert int(trainer.state.optimizer.iterations.numpy()) == 25 - skipped
    assert trainer.validation_loss() < before - 50
