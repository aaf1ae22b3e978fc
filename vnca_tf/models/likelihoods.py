"""p(x|z): final cell states -> TFP distributions over images.

Binary images: an Independent Bernoulli whose logits are cell channel 0.
8-bit RGB: the PixelCNN++ discretized logistic mixture (Salimans et al., 2017)
read from the first 10 * num_mixtures channels, built from TFP as a
MixtureSameFamily of binned Logistics, its bins measured in one of two
conventions: "pixelcnn" (PixelCNN++'s and the authors', in which the paper's
bits/dim are reported) or "exact". Images are NHWC; binary values are 0/1,
8-bit values the exact integers 0..255 (in any real or integer dtype).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf.configs import LIKELIHOOD_CONVENTIONS

tfd = tfp.distributions

LOG_SCALE_MIN = -7.0  # PixelCNN++ clamps the logistic log-scales here.
_HALF_RANGE = 127.5  # Maps 0..255 to [-1, 1], the scale PixelCNN++ works in.


def _wide_scale(dtype) -> float:
    """The logistic scale (in bins) above which the density at a bin's centre is
    a more accurate bin mass than a difference of CDFs in ``dtype``.

    A CDF difference near the median loses about 4 * scale * eps relative
    precision; the midpoint rule errs by about 1 / (24 * scale^2). They cross at
    (96 eps)^(-1/3): 44 bins in float32, 36,000 in float64.
    """
    return float(96.0 * np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps) ** (-1.0 / 3.0)


class QuantizedLogistic(tfd.QuantizedDistribution):
    """A Logistic quantized to the integers in [low, high] (TFP's "ceiling" bins
    (k - 1, k] of the wrapped Logistic), edge bins open-ended.

    Bin masses are exact CDF differences, as QuantizedDistribution computes
    them, except for interior bins of logistics wider than ``_wide_scale``
    bins, where those differences cancel to zero in float32; there the mass is
    the density at the bin's centre, within 1e-5 relative of the exact value.
    """

    def _log_prob(self, y):
        logistic = self.distribution
        wide = (logistic.scale > _wide_scale(self.dtype)) & (y > self.low) & (y < self.high)
        # The exact branch gets a harmless scale where it is not used, so that
        # neither branch produces an infinite value or gradient.
        exact = tfd.QuantizedDistribution(
            tfd.Logistic(
                logistic.loc, tf.where(wide, tf.ones_like(logistic.scale), logistic.scale)
            ),
            low=self.low,
            high=self.high,
        ).log_prob(y)
        return tf.where(wide, logistic.log_prob(y - 0.5), exact)


class PixelCNNBinnedLogistic(tfd.Distribution):
    """A logistic over the 256 pixel values as PixelCNN++ bins it (the authors'
    ``discretized_mix_logistic_loss``, the convention of every published
    bits/dim): the log mass of integer k, from the logistic's ``loc`` and
    ``log_scale`` on the [-1, 1] scale, with x = k / 255 * 2 - 1, s =
    exp(log_scale) and F the logistic's CDF (a sigmoid)::

        k = 0:    log F((x - loc + 1/255) / s)              (the CDF's tail)
        k = 255:  log (1 - F((x - loc - 1/255) / s))        (the survival tail)
        else:     log (F((x - loc + 1/255) / s) - F((x - loc - 1/255) / s))
                  where that float32 difference is > 1e-5, else the log density
                  at the bin centre minus log(127.5): m - log s - 2 softplus(m)
                  - log(127.5), m = (x - loc) / s.

    Computed in the authors' order of float32 operations, the sigmoid as
    PyTorch computes it, 1 / (1 + exp(-t)), and exp correctly rounded (see
    ``_correctly_rounded``), so that the same pixels take the low-mass branch
    and the difference of two sigmoids cancels as theirs did. Only
    ``log_prob`` is defined: samples and means come from the exact bins (the
    convention does not change them).
    """

    def __init__(
        self,
        loc,
        log_scale,
        validate_args=False,
        allow_nan_stats=True,
        name="PixelCNNBinnedLogistic",
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc)
            self._log_scale = tf.convert_to_tensor(log_scale, self._loc.dtype)
            super().__init__(
                dtype=self._loc.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(loc=tfp.util.ParameterProperties(), log_scale=tfp.util.ParameterProperties())

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _log_prob(self, k):
        x = _to_unit_range(tf.cast(k, self.dtype))
        centered = x - self._loc
        inverse_scale = _correctly_rounded(tf.exp, -self._log_scale)
        upper = inverse_scale * (centered + 1.0 / 255.0)
        lower = inverse_scale * (centered - 1.0 / 255.0)
        mass = _pytorch_sigmoid(upper) - _pytorch_sigmoid(lower)
        middle = inverse_scale * centered
        log_density_mid = middle - self._log_scale - 2.0 * tf.nn.softplus(middle)
        interior = tf.where(
            mass > 1e-5,
            tf.math.log(tf.maximum(mass, 1e-12)),
            log_density_mid - np.log(_HALF_RANGE).astype(np.float32),
        )
        return tf.where(
            x < -0.999,
            upper - tf.nn.softplus(upper),
            tf.where(x > 0.999, -tf.nn.softplus(lower), interior),
        )


@tf.custom_gradient
def _pytorch_sigmoid(t):
    """The logistic CDF as PyTorch's ``torch.sigmoid`` computes it: the value
    1 / (1 + exp(-t)), exp correctly rounded, and the gradient y (1 - y) of
    that value y. Differentiating the value's own form would pass through
    exp(-t), which overflows (in float64 too) for a pixel a few hundred scales
    from a sharp logistic's mean: 0 x inf = NaN in the gradient, even of a
    ``tf.where`` branch that is not selected. y (1 - y) is 0 there, as the
    authors' gradient is. (Its gradient has no gradient of its own: second
    derivatives through it are not defined.)"""
    y = _correctly_rounded(tf.math.reciprocal, 1.0 + _correctly_rounded(tf.exp, -t))

    def gradient(upstream):
        return upstream * (1.0 - y) * y

    return y, gradient


def _correctly_rounded(function, values):
    """``function`` (tf.exp, tf.tanh, a reciprocal, a division) of float32
    ``values`` computed in float64 and rounded once, as PyTorch's kernels give
    it; TensorFlow's float32 approximations are an ulp off (exp, tanh; and a
    division, which graph optimisation turns into a reciprocal that is not
    correctly rounded on CPUs), which the authors' cancelling differences and
    their 1e-5 threshold magnify (to 3e-5 of a pixel's log-probability in
    eager mode, 2.5e-4 in a graph)."""
    return tf.cast(function(tf.cast(values, tf.float64)), values.dtype)


def _to_unit_range(values):
    """Pixel values 0..255 -> [-1, 1], as the authors compute it (x / 255 * 2 - 1),
    the division rounded once (a graph may otherwise multiply by 1/255)."""
    return _correctly_rounded(lambda x: x / 255.0, values) * 2.0 - 1.0


class DiscretizedLogisticMixture(tfd.Distribution):
    """The PixelCNN++ mixture of discretized logistics over one RGB pixel.

    ``params`` (..., 10 * n) holds, in PixelCNN++ order: n mixture logits, then
    for each of R, G, B: n means, n log-scales and n raw coupling coefficients,
    all on PixelCNN++'s [-1, 1] scale. The coupling (tanh of the raw values)
    shifts the means of G by c0 * R and of B by c1 * R + c2 * G. Event shape
    [3]; values are integers 0..255.

    ``convention`` says how a channel's bins are measured: "exact" (each of
    the 256 integer bins [k - 0.5, k + 0.5] of a quantized Logistic, the 0 and
    255 bins open-ended, so the 256^3 probabilities of a pixel sum to one), or
    "pixelcnn" (PixelCNNBinnedLogistic: the authors' and PixelCNN++'s form,
    the convention of the paper's bits/dim). Samples are the same for both.
    """

    def __init__(
        self,
        params,
        convention="exact",
        validate_args=False,
        allow_nan_stats=True,
        name="DiscretizedLogisticMixture",
    ):
        parameters = dict(locals())
        with tf.name_scope(name):
            self._params = tf.convert_to_tensor(params)
            if self._params.shape[-1] is None or self._params.shape[-1] % 10:
                raise ValueError(
                    "The logistic mixture needs 10 parameters per component in the "
                    f"last axis, got shape {self._params.shape}."
                )
            if convention not in LIKELIHOOD_CONVENTIONS:
                raise ValueError(
                    f"Unknown convention {convention!r}; use one of "
                    f"{', '.join(LIKELIHOOD_CONVENTIONS)}."
                )
            self._convention = convention
            super().__init__(
                dtype=self._params.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(params=tfp.util.ParameterProperties(event_ndims=1))

    @property
    def num_mixtures(self) -> int:
        return self._params.shape[-1] // 10

    @property
    def convention(self) -> str:
        return self._convention

    def _event_shape(self):
        return tf.TensorShape([3])

    def _event_shape_tensor(self):
        return tf.constant([3], dtype=tf.int32)

    def _split(self):
        """Logits (..., n) and per-channel means, log-scales, coefficients (..., 3, n)."""
        n = self.num_mixtures
        logits = self._params[..., :n]
        rest = tf.reshape(
            self._params[..., n:], tf.concat([tf.shape(self._params)[:-1], [3, 3 * n]], 0)
        )
        means = rest[..., :n]
        log_scales = tf.maximum(rest[..., n : 2 * n], LOG_SCALE_MIN)
        coefficients = _correctly_rounded(tf.tanh, rest[..., 2 * n :])
        return logits, means, log_scales, coefficients

    @staticmethod
    def _channel(mean, log_scale):
        """One channel's quantized Logistic over the integers 0..255 (exact bins)."""
        return QuantizedLogistic(
            tfd.Logistic(
                loc=(mean + 1.0) * _HALF_RANGE - 0.5, scale=tf.exp(log_scale) * _HALF_RANGE
            ),
            low=0.0,
            high=255.0,
        )

    def _log_prob(self, x):
        logits, means, log_scales, coefficients = self._split()
        x = tf.cast(x, self.dtype)
        scaled = _to_unit_range(x)
        red, green = scaled[..., 0:1], scaled[..., 1:2]
        # The coupled means, added up in the authors' order.
        green_shift = coefficients[..., 0, :] * red
        coupled = tf.stack(
            [
                means[..., 0, :] + tf.zeros_like(green_shift),
                means[..., 1, :] + green_shift,
                means[..., 2, :] + coefficients[..., 1, :] * red + coefficients[..., 2, :] * green,
            ],
            axis=-2,
        )  # (..., 3, n)
        coupled, log_scales = (tf.linalg.matrix_transpose(t) for t in (coupled, log_scales))
        if self._convention == "pixelcnn":
            channels = PixelCNNBinnedLogistic(coupled, log_scales)
        else:
            channels = self._channel(coupled, log_scales)
        components = tfd.Independent(channels, reinterpreted_batch_ndims=1)
        mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)
        return mixture.log_prob(x)

    def _sample_n(self, n, seed=None):
        component_seed, red_seed, green_seed, blue_seed = tfp.random.split_seed(
            seed, n=4, salt="DiscretizedLogisticMixture"
        )
        logits, means, log_scales, coefficients = self._split()
        component = tfd.Categorical(logits=logits).sample(n, seed=component_seed)
        chosen = tf.one_hot(component, self.num_mixtures, dtype=self.dtype)[..., None, :]
        means, log_scales, coefficients = (
            tf.reduce_sum(chosen * t, axis=-1) for t in (means, log_scales, coefficients)
        )

        def draw(channel, shift, channel_seed):
            value = self._channel(means[..., channel] + shift, log_scales[..., channel]).sample(
                seed=channel_seed
            )
            return value, _to_unit_range(value)

        red, red_scaled = draw(0, 0.0, red_seed)
        green, green_scaled = draw(1, coefficients[..., 0] * red_scaled, green_seed)
        blue, _ = draw(
            2, coefficients[..., 1] * red_scaled + coefficients[..., 2] * green_scaled, blue_seed
        )
        return tf.stack([red, green, blue], axis=-1)


class Likelihood:
    """What a model needs of p(x|z): ``distribution(cells, convention)``, and the
    log-probabilities of images in each of ``conventions`` (the measures the
    likelihood can be reported in, its own first)."""

    conventions = ()

    def distribution(self, cells, convention=None) -> tfd.Distribution:
        raise NotImplementedError

    def log_probs(self, cells, images) -> dict:
        """{convention: log p(images|cells)} for each of ``conventions``; the
        cells are read once."""
        return {name: self.distribution(cells, name).log_prob(images) for name in self.conventions}


class BernoulliLikelihood(Likelihood):
    """Binary images (values 0/1): Independent Bernoulli, logits = cell channel 0."""

    cell_channels = 1
    max_value = 1.0
    binary = True
    conventions = ("bernoulli",)  # One measure: a Bernoulli has no choice.

    def encoder_input(self, images):
        """What the encoder sees: the 0/1 images as they are (either scaling)."""
        return images

    def distribution(self, cells, convention=None) -> tfd.Distribution:
        """p(x|cells); ``convention`` is for the logistic mixture (unused here)."""
        del convention
        logits = tf.cast(cells[..., :1], tf.float32)
        return tfd.Independent(
            tfd.Bernoulli(logits=logits, dtype=tf.float32), reinterpreted_batch_ndims=3
        )

    def mean_image(self, distribution, seed=None):
        """Pixel probabilities in [0, 1] (exact); ``seed`` is unused."""
        del seed
        return distribution.mean()

    def check_values(self, images, name="images"):
        """Asserts (outside XLA) that ``images`` holds only 0 and 1."""
        images = tf.cast(images, tf.float32)
        return tf.debugging.assert_equal(
            tf.reduce_all((images == 0.0) | (images == 1.0)),
            True,
            message=f"{name} must be binary (every value 0 or 1) for the Bernoulli "
            "likelihood; binarize the images first.",
        )


class LogisticMixtureLikelihood(Likelihood):
    """8-bit RGB (integers 0..255): PixelCNN++ discretized logistic mixture,
    its bins in ``convention`` ("pixelcnn" or "exact"; see
    DiscretizedLogisticMixture); ``conventions`` lists it first, then the other."""

    max_value = 255.0
    binary = False

    def __init__(
        self,
        num_mixtures: int = 1,
        num_mean_samples: int = 100,
        encoder_input: str = "likelihood_scale",
        convention: str = "pixelcnn",
    ):
        if convention not in LIKELIHOOD_CONVENTIONS:
            raise ValueError(
                f"Unknown likelihood convention {convention!r}; use one of "
                f"{', '.join(LIKELIHOOD_CONVENTIONS)}."
            )
        self.num_mixtures = num_mixtures
        self.cell_channels = 10 * num_mixtures
        self.num_mean_samples = num_mean_samples
        self.encoder_scaling = encoder_input
        self.convention = convention
        self.conventions = (convention,) + tuple(
            other for other in LIKELIHOOD_CONVENTIONS if other != convention
        )

    def encoder_input(self, images):
        """What the encoder sees: float images 0..255 on the mixture's [-1, 1]
        scale, computed as the authors' code does (x / 255 * 2 - 1), or in [0, 1]
        for ``encoder_input="unit_interval"``."""
        if self.encoder_scaling == "unit_interval":
            return images / self.max_value
        return _to_unit_range(images)

    def distribution(self, cells, convention=None) -> tfd.Distribution:
        """p(x|cells), its bins in ``convention`` (default: the likelihood's)."""
        params = tf.cast(cells[..., : self.cell_channels], tf.float32)
        return tfd.Independent(
            DiscretizedLogisticMixture(params, convention or self.convention),
            reinterpreted_batch_ndims=2,
        )

    def mean_image(self, distribution, seed=None):
        """The average of ``num_mean_samples`` samples, scaled to [0, 1].

        The mixture's exact mean has no closed form under the RGB coupling; the
        authors show the same sample average in their figures.
        """
        samples = distribution.sample(self.num_mean_samples, seed=seed)
        return tf.reduce_mean(samples, axis=0) / self.max_value

    def check_values(self, images, name="images"):
        """Asserts (outside XLA) that ``images`` holds integers in [0, 255]."""
        images = tf.cast(images, tf.float32)
        valid = (images >= 0.0) & (images <= 255.0) & (images == tf.round(images))
        return tf.debugging.assert_equal(
            tf.reduce_all(valid),
            True,
            message=f"{name} must hold integer pixel values in [0, 255] for the "
            "logistic-mixture likelihood (not images scaled to [0, 1]).",
        )


def make_likelihood(config):
    """The likelihood a ModelConfig names."""
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    return LogisticMixtureLikelihood(
        config.num_mixtures,
        encoder_input=config.encoder_input,
        convention=config.likelihood_convention,
    )
