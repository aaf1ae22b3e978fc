import dataclasses

import keras
import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import binary_images, count_params

from vnca_tf.models.seeds import split_seed
from vnca_tf.models.vnca import VNCA


def _model(name, **changes):
    """The preset's VNCA with seeded initial weights (whatever ran before)."""
    config = presets.get(name).model
    keras.utils.set_random_seed(0)
    return VNCA(dataclasses.replace(config, **changes))


def _perturb_last_layer(model, seed=0, scale=0.05):
    """Gives the zero-initialised last update layer small random weights."""
    kernel = model.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [seed, 1]) * scale)


def _narrow_posterior(model, mean=0.5, log_sigma=-4.0):
    """Sets the encoder's output bias so that q(z|x) is narrow and off the prior:
    the KL is then tens of nats while log p(x|z) varies little."""
    size = model.config.latent_size
    model.encoder.dense.bias.assign(np.r_[np.full(size, mean), np.full(size, log_sigma)])


@pytest.mark.parametrize(
    "name, total",
    [
        ("mnist", 1_182_208 + 5_402_880),
        ("celeb_a", 1_182_208 + 8_550_208),
        ("mnist_damage", 163_968 + 4_878_336),
    ],
)
def test_paper_models_have_the_papers_parameter_counts(name, total):
    assert count_params(_model(name)) == total


def test_elbo_terms_equal_closed_forms_at_initialisation(rng):
    # The zero last layer leaves the 2x2 initial grid unchanged, so every pixel's logit
    # is z[0]: the reconstruction term has a closed form, and so has the KL.
    model = _model("test_mnist")
    x = binary_images(rng, 5, 32)
    seed = tf.constant([11, 12])
    terms = model.negative_elbo(x, beta=3.0, seed=seed)
    mean, log_sigma = (t.numpy().astype(np.float64) for t in model.encoder(x))
    sigma = np.exp(log_sigma)
    expected_kl = 0.5 * np.sum(sigma**2 + mean**2 - 1.0 - 2.0 * log_sigma, axis=1)
    np.testing.assert_allclose(terms["kl"], expected_kl, rtol=1e-5)
    noise = tf.random.stateless_normal([5, model.config.latent_size], split_seed(seed, 2)[0])
    z = mean + sigma * noise.numpy()
    logit = z[:, 0][:, None]
    ones = x.reshape(5, -1).sum(axis=1, keepdims=True)
    expected_nll = ones * np.logaddexp(0, -logit) + (1024 - ones) * np.logaddexp(0, logit)
    np.testing.assert_allclose(terms["reconstruction"], expected_nll[:, 0], rtol=1e-5)
    np.testing.assert_allclose(
        terms["loss"], terms["reconstruction"] + 3.0 * terms["kl"], rtol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage", "test_celeb_a"])
def test_iwae_with_one_sample_averages_to_the_elbo(name, rng):
    model = _model(name)
    _perturb_last_layer(model)
    _narrow_posterior(model)
    side, _, channels = model.config.image_shape
    if channels == 1:
        image = binary_images(rng, 1, side)
    else:
        image = rng.integers(0, 256, size=(1, side, side, 3)).astype(np.float32)
    images = np.repeat(image, 64, axis=0)
    # One call draws one non-doubling step count for its whole batch, so the
    # independent observations are the calls: compare their means.
    calls = range(32)
    iwae = np.array([model.iwae(images, 1, seed=[s, 0]).numpy().mean() for s in calls])
    elbo = np.array(
        [-model.negative_elbo(images, seed=[s, 1])["loss"].numpy().mean() for s in calls]
    )
    standard_error = np.sqrt((iwae.var(ddof=1) + elbo.var(ddof=1)) / len(calls))
    assert abs(iwae.mean() - elbo.mean()) < 4 * standard_error
    # The test has power: dropping the KL term from the ELBO would move it by
    # more than 10 standard errors.
    kl = model.negative_elbo(images, seed=[0, 1])["kl"].numpy()
    assert kl.mean() > 10 * standard_error


@pytest.mark.slow
def test_iwae_128_is_at_least_the_elbo_and_runs_under_tf_function_and_xla(rng):
    model = _model("test_mnist")
    _perturb_last_layer(model)
    x = binary_images(rng, 6, 32)
    seed = tf.constant([5, 6])
    eager = model.iwae(x, 128, seed=seed, chunk_size=32).numpy()
    graph = tf.function(model.iwae)(x, 128, seed=seed, chunk_size=32).numpy()
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    # Chunking only bounds memory: the bound does not depend on the chunk size.
    np.testing.assert_allclose(model.iwae(x, 128, seed=seed, chunk_size=24), eager, rtol=1e-5)
    xla = tf.function(model.iwae, jit_compile=True)(x, 128, seed=seed, chunk_size=32).numpy()
    elbos = np.stack([-model.negative_elbo(x, seed=[s, 2])["loss"].numpy() for s in range(20)])
    assert np.isfinite(xla).all()
    assert eager.mean() >= elbos.mean() and xla.mean() >= elbos.mean()
    xla_elbo = tf.function(model.negative_elbo, jit_compile=True)(x, seed=seed)
    assert np.isfinite(xla_elbo["loss"]).all()
    # Without randomness, XLA and eager agree: decoding fixed latents.
    z = tf.constant(rng.normal(size=(6, 16)).astype(np.float32))
    decode = lambda z: model.decode(z).log_prob(x)  # noqa: E731
    np.testing.assert_allclose(tf.function(decode, jit_compile=True)(z), decode(z), rtol=1e-4)


@pytest.mark.slow
def test_non_doubling_iwae_and_elbo_compile_with_xla(rng):
    model = _model("test_mnist_damage")
    x = binary_images(rng, 3, 28)
    seed = tf.constant([1, 2])
    iwae = tf.function(model.iwae, jit_compile=True)(x, 8, seed=seed, chunk_size=3)
    elbo = tf.function(model.negative_elbo, jit_compile=True)(x, seed=seed)["loss"]
    assert np.isfinite(iwae).all() and np.isfinite(elbo).all()


@pytest.mark.parametrize(
    "name, frames", [("test_mnist", 1 + 5 * 2 + 4), ("test_celeb_a", 1 + 4 * 2 + 3)]
)
def test_sample_reconstruct_and_growth_give_pictures(name, frames, rng):
    model = _model(name)
    _perturb_last_layer(model)
    shape = model.config.image_shape
    max_value = model.likelihood.max_value
    samples, means = model.sample(3, seed=4)
    assert samples.shape == means.shape == (3,) + shape
    np.testing.assert_array_equal(samples, np.round(samples))
    assert samples.numpy().min() >= 0 and samples.numpy().max() <= max_value
    assert 0.0 <= means.numpy().min() and means.numpy().max() <= 1.0
    # The same seed gives the same samples; another seed others.
    np.testing.assert_array_equal(model.sample(3, seed=4)[0], samples)
    assert np.any(model.sample(3, seed=5)[0].numpy() != samples.numpy())
    images = samples.numpy()
    recon_samples, recon_means = model.reconstruct(images, seed=1)
    assert recon_samples.shape == recon_means.shape == (3,) + shape
    growth = model.growth_frames(rng.normal(size=(2, 16)).astype(np.float32), seed=2)
    assert growth.shape == (frames, 2) + shape


def test_non_doubling_growth_runs_the_given_number_of_steps(rng):
    model = _model("test_mnist_damage")
    growth = model.growth_frames(rng.normal(size=(2, 16)).astype(np.float32), num_steps=4)
    assert growth.shape == (5, 2, 28, 28, 1)
    z = rng.normal(size=(2, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="num_steps must be >= 1 .or None: max_steps., got 0"):
        model.damage_recovery(z, num_steps=0)  # Not "the default".
    with pytest.raises(ValueError, match=r"Damage size must be in \[1, 28\].*got 0"):
        model.damage_recovery(z, seed=3, damage_size=0)  # Nor is a side of 0.
    samples, _ = model.sample(2, seed=1)
    assert samples.shape == (2, 28, 28, 1)


@pytest.mark.parametrize(
    "name, bad, error, words",
    [
        (
            "test_mnist",
            np.zeros((2, 28, 28, 1)),
            ValueError,
            r"\(batch, 32, 32, 1\).*\(2, 28, 28, 1\)",
        ),
        ("test_mnist", np.zeros((2, 32, 32, 3)), ValueError, r"\(batch, 32, 32, 1\)"),
        ("test_mnist", np.zeros((32, 32, 1)), ValueError, r"\(batch, 32, 32, 1\) \(NHWC\)"),
        ("test_mnist", np.full((2, 32, 32, 1), 0.5), tf.errors.InvalidArgumentError, "0 or 1"),
        ("test_celeb_a", np.zeros((2, 16, 16, 1)), ValueError, r"\(batch, 16, 16, 3\)"),
        (
            "test_celeb_a",
            np.full((2, 16, 16, 3), 0.5),
            tf.errors.InvalidArgumentError,
            r"integer pixel values in \[0, 255\]",
        ),
        (
            "test_celeb_a",
            np.full((2, 16, 16, 3), 300.0),
            tf.errors.InvalidArgumentError,
            r"\[0, 255\]",
        ),
    ],
)
def test_bad_images_get_an_error_naming_what_is_expected(name, bad, error, words):
    model = _model(name)
    for method in (model.negative_elbo, model.iwae, model.encode):
        with pytest.raises(error, match=words):
            method(tf.constant(bad, tf.float32))
    # The checks also hold inside tf.function (graph mode).
    with pytest.raises(error, match=words):
        tf.function(model.negative_elbo)(tf.constant(bad, tf.float32))


def test_non_numeric_images_and_bad_sample_counts_are_rejected():
    model = _model("test_mnist")
    with pytest.raises(TypeError, match="real or integer"):
        model.encode(tf.fill([1, 32, 32, 1], "a"))
    with pytest.raises(ValueError, match="num_samples"):
        model.iwae(np.zeros((1, 32, 32, 1), np.float32), 0)


def test_integer_and_float_images_give_the_same_loss(rng):
    model = _model("test_celeb_a")
    x = rng.integers(0, 256, size=(2, 16, 16, 3))
    np.testing.assert_allclose(
        model.negative_elbo(x.astype(np.uint8), seed=1)["loss"],
        model.negative_elbo(x.astype(np.float32), seed=1)["loss"],
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", ["mnist", "mnist_damage"])
def test_every_weight_is_in_a_model_checkpoint(name, tmp_path):
    model = _model(name)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = {n for n, _ in tf.train.list_variables(path) if n.startswith("model/")}
    assert len(saved) == len(model.weights) > 0
    restored = _model(name)
    _perturb_last_layer(model, seed=3)
    tf.train.Checkpoint(model=model).write(str(tmp_path / "again"))
    tf.train.Checkpoint(model=restored).read(str(tmp_path / "again")).assert_consumed()
    for a, b in zip(restored.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_decode_mean_equals_the_means_of_decode_pictures(rng):
    model = _model("test_celeb_a")
    _perturb_last_layer(model)
    z = rng.normal(size=(2, 16)).astype(np.float32)
    _, means = model.decode_pictures(z, seed=9)
    np.testing.assert_array_equal(model.decode_mean(z, seed=9), means)


def test_rgb_images_enter_the_encoder_on_the_mixtures_scale():
    # The authors feed x / 255 * 2 - 1; "unit_interval" keeps x / 255.
    config = presets.get("test_celeb_a").model
    pixels = tf.constant([0.0, 127.5, 255.0])
    np.testing.assert_allclose(VNCA(config).likelihood.encoder_input(pixels), [-1, 0, 1])
    unit = VNCA(dataclasses.replace(config, encoder_input="unit_interval"))
    np.testing.assert_allclose(unit.likelihood.encoder_input(pixels), [0, 0.5, 1])
    binary = _model("test_mnist")
    np.testing.assert_array_equal(binary.likelihood.encoder_input(tf.constant([0.0, 1.0])), [0, 1])


def test_posterior_clamps_bound_the_mean_and_log_sigma(rng):
    model = _model("test_mnist", posterior_loc_bound=100.0, posterior_log_scale_bound=7.0)
    free = _model("test_mnist")
    size = model.config.latent_size
    bias = np.r_[
        np.full(size // 2, 500.0),
        np.full(size - size // 2, -3.0),
        np.full(size // 2, -20.0),
        np.full(size - size // 2, 9.0),
    ]
    for m in (model, free):
        m.encoder.dense.bias.assign(bias)
    x = binary_images(rng, 2, 32)
    with tf.GradientTape() as tape:
        posterior = model.encode(x)
        total = tf.reduce_sum(posterior.mean()) + tf.reduce_sum(posterior.stddev())
    loc, scale = posterior.mean().numpy(), posterior.stddev().numpy()
    assert np.all(loc[:, : size // 2] == 100.0) and np.all(loc[:, size // 2 :] < 0)
    np.testing.assert_allclose(scale[:, : size // 2], np.exp(-7.0), rtol=1e-6)
    np.testing.assert_allclose(scale[:, size // 2 :], np.exp(7.0), rtol=1e-6)
    # Clamped outputs pass no gradient (as torch.clamp): only the free means do.
    bias_gradient = tape.gradient(total, model.encoder.dense.bias).numpy()
    np.testing.assert_array_equal(bias_gradient[: size // 2], 0)
    np.testing.assert_array_equal(bias_gradient[size:], 0)
    assert np.all(bias_gradient[size // 2 : size] == 2.0)  # d(loc)/d(bias), two images.
    assert free.encode(x).mean().numpy().max() > 400  # Without clamps: free.
