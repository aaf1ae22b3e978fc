import numpy as np
import pytest
import tensorflow as tf

from vnca_tf.models.likelihoods import (
    BernoulliLikelihood,
    DiscretizedLogisticMixture,
    LogisticMixtureLikelihood,
)


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _log_bin_mass(upper, lower):
    """log(sigmoid(upper) - sigmoid(lower)) in float64, from the CDF side left of
    the bin's centre and the survival side right of it (no cancellation)."""
    left = (upper + lower) < 0
    big = np.where(left, _log_sigmoid(upper), _log_sigmoid(-lower))
    small = np.where(left, _log_sigmoid(lower), _log_sigmoid(-upper))
    return big + np.log1p(-np.exp(small - big))


def pixelcnn_log_prob(params, x):
    """PixelCNN++ discretized logistic mixture log p(x), float64 NumPy.

    params (..., 10n) in PixelCNN++ order; x (..., 3) integers 0..255.
    """
    params = params.astype(np.float64)
    n = params.shape[-1] // 10
    logits = params[..., :n]
    rest = params[..., n:].reshape(params.shape[:-1] + (3, 3 * n))
    means = rest[..., :n].copy()
    log_scales = np.maximum(rest[..., n : 2 * n], -7.0)
    coeffs = np.tanh(rest[..., 2 * n :])
    xs = x.astype(np.float64) / 127.5 - 1.0  # PixelCNN++ works on [-1, 1].
    means[..., 1, :] += coeffs[..., 0, :] * xs[..., 0:1]
    means[..., 2, :] += coeffs[..., 1, :] * xs[..., 0:1] + coeffs[..., 2, :] * xs[..., 1:2]
    centered = xs[..., :, None] - means
    inv_scale = np.exp(-log_scales)
    upper = inv_scale * (centered + 1.0 / 255.0)
    lower = inv_scale * (centered - 1.0 / 255.0)
    xi = x[..., :, None]
    log_probs = np.where(
        xi == 0,
        _log_sigmoid(upper),
        np.where(xi == 255, _log_sigmoid(-lower), _log_bin_mass(upper, lower)),
    )
    log_mix = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return np.logaddexp.reduce(log_probs.sum(axis=-2) + log_mix, axis=-1)


def _random_params(rng, shape, num_mixtures, sharp):
    params = rng.normal(size=shape + (10 * num_mixtures,))
    n = num_mixtures
    scales = params[..., n:].reshape(shape + (3, 3 * n))
    if sharp:  # Log-scales near and below PixelCNN++'s clamp at -7.
        scales[..., n : 2 * n] = rng.uniform(-9.0, -4.0, size=scales[..., n : 2 * n].shape)
    else:
        scales[..., n : 2 * n] = rng.uniform(-4.0, 0.0, size=scales[..., n : 2 * n].shape)
    params[..., n:] = scales.reshape(shape + (9 * n,))
    return params


def _values_near_means(rng, params, num_mixtures):
    """Pixel values at and around the first component's means, plus the edges."""
    means = params[..., num_mixtures:].reshape(params.shape[:-1] + (3, 3 * num_mixtures))
    centre = np.clip(np.round((means[..., 0] + 1) * 127.5), 0, 255)
    jitter = rng.integers(-3, 4, size=centre.shape)
    x = np.clip(centre + jitter, 0, 255)
    x[0, 0] = 0
    x[0, 1] = 255
    x[1, 0] = rng.integers(0, 256, size=3)
    return x


@pytest.mark.parametrize("num_mixtures", [1, 3])
@pytest.mark.parametrize("sharp", [False, True])
def test_mixture_log_prob_matches_float64_pixelcnn_formula(rng, num_mixtures, sharp):
    params = _random_params(rng, (4, 50), num_mixtures, sharp)
    x = _values_near_means(rng, params, num_mixtures)
    expected = pixelcnn_log_prob(params, x)
    assert np.isfinite(expected).all()
    exact = DiscretizedLogisticMixture(params).log_prob(x).numpy()  # float64 params
    np.testing.assert_allclose(exact, expected, rtol=1e-9, atol=1e-9)
    single = DiscretizedLogisticMixture(params.astype(np.float32)).log_prob(x).numpy()
    np.testing.assert_allclose(single, expected, rtol=2e-4, atol=2e-3)


def test_wide_logistics_keep_float32_log_probs_finite_and_accurate(rng):
    # Log-scales up to 11 (a logistic millions of bins wide): float32 CDF
    # differences cancel to zero there, the bin-centre density does not.
    params = _random_params(rng, (3, 40), 1, sharp=False)
    rest = params[..., 1:].reshape(3, 40, 3, 3)
    rest[..., 1] = rng.uniform(0.0, 11.0, size=rest[..., 1].shape)
    params[..., 1:] = rest.reshape(3, 40, 9)
    x = rng.integers(0, 256, size=(3, 40, 3))
    x[0, :3] = [[0, 0, 0], [255, 255, 255], [0, 255, 128]]
    expected = pixelcnn_log_prob(params, x)
    single = DiscretizedLogisticMixture(params.astype(np.float32)).log_prob(x).numpy()
    np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-4)


def test_log_prob_gradients_are_finite_for_wide_sharp_and_edge_cases(rng):
    params = _random_params(rng, (6, 30), 2, sharp=True).astype(np.float32)
    params[:3, :, 4:6] = 10.0  # Very wide red logistics in half of the pixels.
    x = rng.integers(0, 256, size=(6, 30, 3))
    x[:, :5] = 0
    x[:, 5:10] = 255
    params = tf.Variable(params)
    with tf.GradientTape() as tape:
        log_prob = tf.reduce_sum(DiscretizedLogisticMixture(params).log_prob(x))
    gradient = tape.gradient(log_prob, params).numpy()
    assert np.isfinite(log_prob.numpy()) and np.isfinite(gradient).all()
    assert np.abs(gradient).max() > 0


def _channel_bins(mean, log_scale):
    """The 256 bin probabilities of one quantized logistic, float64 NumPy;
    ``mean`` on the [-1, 1] scale, vectorised over leading axes."""
    mean = np.asarray(mean, np.float64)[..., None]
    edges = (np.arange(257) - 0.5) / 127.5 - 1.0
    with np.errstate(over="ignore"):  # exp -> inf far left gives the CDF's limit 0.
        cdf = 1.0 / (1.0 + np.exp(-(edges - mean) / np.exp(max(log_scale, -7.0))))
    cdf[..., 0], cdf[..., -1] = 0.0, 1.0
    return np.diff(cdf, axis=-1)


def _component(params, n, k):
    """Means, log-scales and tanh coefficients of component k, per channel."""
    rest = params[n:].reshape(3, 3 * n)
    return rest[:, k], rest[:, n + k], np.tanh(rest[:, 2 * n + k])


@pytest.mark.slow
def test_probabilities_of_all_256_cubed_values_of_a_pixel_sum_to_one(rng):
    # Two components with RGB coupling and one sharp channel.
    params = _random_params(rng, (), 2, sharp=False)
    params[4] = -6.5  # The red log-scale of component 0.
    values, total = np.arange(256.0), 0.0
    for reds in np.array_split(values, 16):  # 1M values at a time: 16.7M at once took 12.6 GB.
        grid = np.stack(np.meshgrid(reds, values, values, indexing="ij"), -1).reshape(-1, 3)
        total += np.exp(DiscretizedLogisticMixture(params).log_prob(grid).numpy()).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-9)


def test_each_channel_has_256_bins_summing_to_one(rng):
    # One component, no coupling: the channels are independent, so the joint
    # summed over one channel's 256 values, divided by the joint at value 128,
    # is 1 / p_channel(128).
    params = _random_params(rng, (), 1, sharp=True)
    params[[3, 6, 9]] = 0.0  # tanh(0) = 0: no coupling.
    values = np.arange(256.0)
    for channel in range(3):
        x = np.full((256, 3), 128.0)
        x[:, channel] = values
        joint = np.exp(DiscretizedLogisticMixture(params).log_prob(x).numpy())
        mean, log_scale, _ = _component(params, 1, 0)
        bins = _channel_bins(mean[channel], log_scale[channel])
        np.testing.assert_allclose(bins.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(joint.sum() / joint[128] * bins[128], 1.0, rtol=1e-9)


def test_samples_are_integers_with_the_coupled_marginals(rng):
    n = 2
    params = _random_params(rng, (), n, sharp=False)
    params[[4, 5, 10, 11, 16, 17]] = -2.0  # Wide logistics.
    samples = (
        DiscretizedLogisticMixture(params.astype(np.float32)).sample(40000, seed=[1, 2]).numpy()
    )
    assert samples.shape == (40000, 3)
    np.testing.assert_array_equal(samples, np.round(samples))
    assert samples.min() >= 0 and samples.max() <= 255
    weights = np.exp(params[:n] - np.logaddexp.reduce(params[:n]))
    red, green = np.zeros(256), np.zeros(256)
    red_values = np.arange(256) / 127.5 - 1.0
    for k in range(n):
        mean, log_scale, coeff = _component(params, n, k)
        red_k = _channel_bins(mean[0], log_scale[0])
        red += weights[k] * red_k
        # Green given red is shifted by c0 * red: sum over the 256 red values.
        green += weights[k] * red_k @ _channel_bins(mean[1] + coeff[0] * red_values, log_scale[1])
    for channel, marginal in ((0, red), (1, green)):
        frequencies = np.bincount(samples[:, channel].astype(int), minlength=256)
        ks = np.abs(np.cumsum(frequencies) / len(samples) - np.cumsum(marginal)).max()
        assert ks < 0.01, (channel, ks)


def test_pixelcnn_bins_have_the_exact_gradient_where_no_low_mass_branch_applies(rng):
    # Moderate logistics around the data, edges included. Where no bin of any
    # channel and component has a mass of 1e-5 or less (the log-probabilities
    # agree), the authors' form is the exact one, so the gradients with
    # respect to every mixture parameter of those pixels must agree (float64:
    # no float32 cancellation either).
    params = _random_params(rng, (4, 50), 2, sharp=False)
    x = _values_near_means(rng, params, 2)
    log_probs, gradients = {}, {}
    for convention in ("pixelcnn", "exact"):
        variable = tf.Variable(params)
        with tf.GradientTape() as tape:
            log_probs[convention] = DiscretizedLogisticMixture(variable, convention).log_prob(x)
            total = tf.reduce_sum(log_probs[convention])
        gradients[convention] = tape.gradient(total, variable).numpy()
    same = np.isclose(log_probs["pixelcnn"], log_probs["exact"], rtol=1e-12, atol=0)
    assert 50 < same.sum() < same.size  # Both kinds of pixels are there.
    assert np.abs(gradients["exact"][same]).max() > 0.1
    np.testing.assert_allclose(
        gradients["pixelcnn"][same], gradients["exact"][same], rtol=1e-7, atol=1e-9
    )


def test_pixelcnn_bins_take_the_density_at_the_centre_for_a_low_mass_bin():
    # Red sharp (s = e^-6, 0.32 bins) with its mean 6.5 bins from the value: a
    # mass of 1e-8, where the authors' form takes log f(centre) - log(127.5);
    # green and blue wide (s = 1) and uncoupled, the same in both forms.
    params = np.zeros(10)
    params[1], params[2] = 6.0 / 127.5, -6.0  # Red's mean and log-scale.
    x = np.array([[127.0, 128.0, 128.0]])
    exact = DiscretizedLogisticMixture(params, "exact").log_prob(x).numpy()
    pixelcnn = DiscretizedLogisticMixture(params, "pixelcnn").log_prob(x).numpy()
    mean, scale = 6.0 / 127.5, np.exp(-6.0)
    red = x[0, 0] / 127.5 - 1.0
    centre = (red - mean) / scale
    log_density = centre - np.log(scale) - 2 * np.logaddexp(0.0, centre) - np.log(127.5)
    red_exact = np.log(
        1 / (1 + np.exp(-(red + 1 / 255 - mean) / scale))
        - 1 / (1 + np.exp(-(red - 1 / 255 - mean) / scale))
    )
    assert np.exp(red_exact) < 1e-5
    np.testing.assert_allclose(pixelcnn - exact, log_density - red_exact, rtol=1e-6)


def test_mixture_rejects_parameters_not_in_groups_of_ten():
    with pytest.raises(ValueError, match="10 parameters per component"):
        DiscretizedLogisticMixture(np.zeros((2, 7), np.float32))


def test_logistic_likelihood_reads_the_first_channels_and_gives_image_batches(rng):
    likelihood = LogisticMixtureLikelihood(num_mixtures=1)
    cells = rng.normal(size=(2, 4, 5, 16)).astype(np.float32)
    distribution = likelihood.distribution(cells)
    assert distribution.batch_shape == (2,) and distribution.event_shape == (4, 5, 3)
    x = rng.integers(0, 256, size=(2, 4, 5, 3))
    expected = pixelcnn_log_prob(cells[..., :10], x).sum(axis=(1, 2))
    np.testing.assert_allclose(distribution.log_prob(x), expected, rtol=1e-4)
    mean = likelihood.mean_image(distribution, seed=[0, 1]).numpy()
    assert mean.shape == (2, 4, 5, 3) and 0.0 <= mean.min() and mean.max() <= 1.0


def test_bernoulli_likelihood_matches_closed_form(rng):
    likelihood = BernoulliLikelihood()
    cells = rng.normal(scale=3.0, size=(3, 6, 6, 4)).astype(np.float32)
    x = (rng.random((3, 6, 6, 1)) > 0.5).astype(np.float32)
    distribution = likelihood.distribution(cells)
    assert distribution.event_shape == (6, 6, 1)
    logits = cells[..., :1].astype(np.float64)
    expected = (x * _log_sigmoid(logits) + (1 - x) * _log_sigmoid(-logits)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(distribution.log_prob(x), expected, rtol=1e-5)
    np.testing.assert_allclose(
        likelihood.mean_image(distribution), 1 / (1 + np.exp(-logits)), rtol=1e-5
    )


@pytest.mark.parametrize(
    "likelihood, bad, words",
    [
        (BernoulliLikelihood(), [[0.0, 0.5]], "binary"),
        (LogisticMixtureLikelihood(), [[0.0, 0.5]], r"integer pixel values in \[0, 255\]"),
        (LogisticMixtureLikelihood(), [[0.0, 256.0]], r"integer pixel values in \[0, 255\]"),
        (LogisticMixtureLikelihood(), [[-1.0, 3.0]], r"integer pixel values in \[0, 255\]"),
    ],
)
def test_value_checks_name_the_expected_range(likelihood, bad, words):
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        likelihood.check_values(tf.constant(bad))
