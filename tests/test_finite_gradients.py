"""Finite gradients at the extremes: every likelihood, the posterior's clamps,
the KL and the mixed precisions, where a branch nobody selects (tf.where) or an
overflowing intermediate could send NaN back into training; and the authors'
own likelihood gradient (dml_grad.npz), which training follows."""

import dataclasses
import os

import numpy as np
import presets
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import quiet_preset

from vnca_tf import data
from vnca_tf.configs import LIKELIHOOD_CONVENTIONS, RunConfig
from vnca_tf.models import build_model
from vnca_tf.models.likelihoods import BernoulliLikelihood, DiscretizedLogisticMixture
from vnca_tf.training.loop import Trainer

tfd = tfp.distributions


def _log_prob_and_gradient(params, pixels, convention, mode="eager"):
    """log p and its gradient, computed eagerly, in a graph (as training runs
    on a CPU) or compiled with XLA (as on a GPU)."""
    variable = tf.Variable(params)

    def compute(pixels):
        with tf.GradientTape() as tape:
            log_prob = DiscretizedLogisticMixture(variable, convention).log_prob(pixels)
            total = tf.reduce_sum(log_prob)
        return log_prob, tape.gradient(total, variable)

    if mode != "eager":
        compute = tf.function(compute, jit_compile=mode == "xla")
    log_prob, gradient = compute(tf.constant(pixels, tf.float32))
    return log_prob.numpy(), gradient.numpy()


def _relative_error(gradient, reference):
    """The largest per-pixel max |d| / max(max |reference|, 1) (dml_grad.npz's measure)."""
    scale = np.maximum(np.abs(reference).max(axis=1), 1.0)
    return float((np.abs(gradient - reference).max(axis=1) / scale).max())


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("pixel_set", ["bulk", "confident"])
@pytest.mark.parametrize("num_mixtures", [1, 4])
def test_pixelcnn_gradient_is_finite_and_as_close_as_the_authors(
    fidelity_dir, pixel_set, num_mixtures, mode
):
    # The authors' float32 gradient is finite for every pixel of dml_grad.npz;
    # ours must be too, and as close to the float64 gradient as theirs is, in
    # every way a step runs.
    fixture = np.load(os.path.join(fidelity_dir, "dml_grad.npz"))
    key = f"{pixel_set}_{{}}_{num_mixtures}"
    log_prob, gradient = _log_prob_and_gradient(
        fixture[key.format("params")], fixture[key.format("k")], "pixelcnn", mode
    )
    authors = fixture[key.format("logp_authors")]
    np.testing.assert_allclose(log_prob, authors, rtol=1e-5, atol=1e-5)
    assert np.isfinite(gradient).all()
    reference = fixture[key.format("grad_float64")]
    theirs = _relative_error(fixture[key.format("grad_authors")], reference)
    assert _relative_error(gradient, reference) <= 2 * theirs
    assert _relative_error(gradient, fixture[key.format("grad_authors")]) < 5e-4


def _grid_params(num_mixtures):
    """Every combination of log-scale (-8 .. 0: the clamp at -7 included), mean
    (-1 .. 1) and pixel value (0 .. 255, each channel through all of them),
    with coupling; the other components take the grid rolled."""
    log_scales = np.linspace(-8.0, 0.0, 9)
    means = np.linspace(-1.0, 1.0, 5)
    values = np.arange(256)
    log_scale, mean, value = (a.ravel() for a in np.meshgrid(log_scales, means, values))
    pixels = np.stack([value, 255 - value, (value + 128) % 256], axis=-1)
    n, count = num_mixtures, len(value)
    rng = np.random.default_rng(7)
    params = np.zeros((count, 10 * n), np.float32)
    params[:, :n] = rng.normal(scale=2.0, size=(count, n))
    rest = np.zeros((count, 3, 3 * n), np.float32)
    for component in range(n):
        rest[:, :, component] = np.roll(mean, 37 * component)[:, None]
        rest[:, :, n + component] = np.roll(log_scale, 101 * component)[:, None]
        rest[:, :, 2 * n + component] = rng.normal(scale=2.0, size=(count, 3))
    params[:, n:] = rest.reshape(count, 9 * n)
    return params, pixels


@pytest.mark.parametrize("convention", LIKELIHOOD_CONVENTIONS)
@pytest.mark.parametrize("num_mixtures", [1, 4])
def test_logistic_mixture_is_finite_over_the_whole_grid(convention, num_mixtures):
    params, pixels = _grid_params(num_mixtures)
    log_prob, gradient = _log_prob_and_gradient(params, pixels, convention)
    assert np.isfinite(log_prob).all() and np.isfinite(gradient).all()
    assert log_prob.min() < -1000  # Pixels thousands of scales from every mean are there.


def test_bernoulli_is_finite_at_any_logit():
    logits = tf.Variable(
        np.array([-3e38, -1e30, -1e4, -100.0, 0.0, 100.0, 1e4, 1e30, 3e38], np.float32).reshape(
            1, 3, 3, 1
        )
    )
    for value in (0.0, 1.0):
        images = tf.fill([1, 3, 3, 1], value)
        with tf.GradientTape() as tape:
            log_prob = BernoulliLikelihood().distribution(logits).log_prob(images)
        gradient = tape.gradient(log_prob, logits).numpy()
        assert np.isfinite(log_prob.numpy()).all() and np.isfinite(gradient).all()
        # d log p / d logit = value - sigmoid(logit): -1, 0 or 1 at the extremes.
        with np.errstate(over="ignore"):
            sigmoid = 1 / (1 + np.exp(-logits.numpy().astype(np.float64).ravel()))
        np.testing.assert_allclose(gradient.ravel(), value - sigmoid, atol=1e-7)


@pytest.mark.parametrize("loc", [-1e4, -100.0, 0.0, 100.0, 1e4])
@pytest.mark.parametrize("log_scale", [-30.0, -7.0, 0.0, 7.0, 30.0])
def test_the_kl_is_finite_with_its_gradient(loc, log_scale):
    loc, log_scale = tf.Variable([loc]), tf.Variable([log_scale])
    with tf.GradientTape() as tape:
        posterior = tfd.Normal(loc, tf.exp(log_scale))
        kl = tfd.kl_divergence(posterior, tfd.Normal(0.0, 1.0))
    gradients = tape.gradient(kl, [loc, log_scale])
    assert np.isfinite(kl.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in gradients)


def _gradients(model, images, loss_scale=1.0):
    """The loss terms, and the gradients as the training step computes them:
    of the loss times ``loss_scale``, divided by it."""
    with tf.GradientTape() as tape:
        terms = model.negative_elbo(images, seed=3)
        loss = tf.reduce_mean(terms["loss"]) * loss_scale
    gradients = tape.gradient(loss, model.trainable_variables)
    return terms, [g / loss_scale for g in gradients]


def _all_finite(terms, gradients):
    return all(np.isfinite(terms[k].numpy()).all() for k in ("reconstruction", "kl")) and all(
        np.isfinite(g.numpy()).all() for g in gradients
    )


def test_the_posterior_clamps_keep_the_loss_and_gradient_finite(data_dir):
    # The beta = 100 preset clamps q(z|x)'s mean to [-100, 100] and log sigma
    # to [-7, 7]. An encoder whose outputs run far past both (log sigma 1e3:
    # exp overflows) gives an infinite KL without the clamps and a finite loss
    # and gradient with them (a Bernoulli model, so that only the clamps differ).
    config = presets.get("test_mnist").model
    images = next(iter(data.load_split("binarized_mnist", "test", data_dir=data_dir).batch(4)))
    results = {}
    for bounds in ((None, None), (100.0, 7.0)):
        model = build_model(
            dataclasses.replace(
                config, posterior_loc_bound=bounds[0], posterior_log_scale_bound=bounds[1]
            )
        )
        latent = config.latent_size
        model.encoder.dense.bias.assign(np.r_[np.full(latent, 1e4), np.full(latent, 1e3)])
        results[bounds] = _gradients(model, images)
    assert not np.isfinite(results[(None, None)][0]["kl"].numpy()).any()
    assert _all_finite(*results[(100.0, 7.0)])
    posterior = model.encode(images)
    np.testing.assert_allclose(posterior.mean().numpy(), 100.0)
    np.testing.assert_allclose(posterior.stddev().numpy(), np.exp(7.0), rtol=1e-6)


def sharpen_heads(model, log_scale: float = -6.0) -> None:
    """Makes the logistic mixture's heads sharp: the update net's last bias
    drives every log-scale channel to about ``log_scale`` by the last step."""
    config = model.config
    n = config.num_mixtures
    steps = (config.num_doublings + 1) * config.steps_per_stage
    # PixelCNN++ order: n logits, then per channel n means, n log-scales, n coefficients.
    channels = [n + channel * 3 * n + n + k for channel in range(3) for k in range(n)]
    bias = np.zeros(model.update_net.out.bias.shape, np.float32)
    bias[channels] = log_scale / steps
    model.update_net.out.bias.assign(bias)


@pytest.mark.parametrize(
    "precision, loss_scale",
    # float16 holds at most 65,504: gradients of millions need a loss scale
    # below 1, which the Trainer's dynamic scale reaches (training.loss_scale).
    [("float32", 1.0), ("mixed_bfloat16", 1.0), ("mixed_float16", 2.0**-6)],
)
def test_sharp_heads_give_finite_gradients_in_every_precision(precision, loss_scale, data_dir):
    config = presets.get("test_celeb_a").model
    model = build_model(config, precision)
    sharpen_heads(model)
    images = next(
        iter(data.load_split("celeb_a", "train", data_dir=data_dir, image_size=16).batch(8))
    )
    terms, gradients = _gradients(model, images, loss_scale)
    assert _all_finite(terms, gradients)
    cells = model.decode_cells(model.encode_mean(images))
    log_scales = cells.numpy()[..., [2, 5, 8]]
    assert np.median(log_scales) < -4  # The heads are sharp ...
    assert terms["reconstruction"].numpy().min() > 1e4  # ... and far from the pixels.


@pytest.mark.slow
@pytest.mark.parametrize("convention", LIKELIHOOD_CONVENTIONS)
def test_a_model_with_sharp_heads_trains_without_skipping_an_update(convention, tmp_path, data_dir):
    preset = quiet_preset("test_celeb_a")
    preset = dataclasses.replace(
        preset, model=dataclasses.replace(preset.model, likelihood_convention=convention)
    )
    trainer = Trainer(preset, str(tmp_path), run=RunConfig(data_dir=data_dir))
    sharpen_heads(trainer.state.model)
    metrics = trainer.train(6, progress=False)
    assert int(trainer.state.nonfinite_total.numpy()) == 0
    assert int(trainer.state.optimizer.iterations.numpy()) == 6
    assert np.isfinite(metrics["gradient_norm"]) and metrics["loss"] > 1e4


@pytest.mark.slow
def test_float16_training_with_sharp_heads_lowers_the_scale_below_one_and_trains(
    tmp_path, data_dir
):
    # Gradients of millions overflow float16 even unscaled: the dynamic loss
    # scale halves from 2^15 to below 1, each overflow skipped and counted as
    # no divergence down to a scale of 1, and then the updates are taken.
    trainer = Trainer(
        quiet_preset("test_celeb_a", max_nonfinite=5),
        str(tmp_path),
        run=RunConfig(data_dir=data_dir, precision="mixed_float16"),
    )
    sharpen_heads(trainer.state.model)
    metrics = trainer.train(30, progress=False)
    skipped = int(trainer.state.nonfinite_total.numpy())
    assert metrics["loss_scale"] < 1 and metrics["loss_scale"] == 2.0 ** (15 - skipped)
    assert int(trainer.state.optimizer.iterations.numpy()) == 30 - skipped > 5
    assert np.isfinite(metrics["gradient_norm"])
