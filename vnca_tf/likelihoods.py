"""p(x|z): final cell states -> TFP distributions over images.

Binary images: an Independent Bernoulli whose logits are cell channel 0.
8-bit RGB: the PixelCNN++ discretized logistic mixture (Salimans et al., 2017)
read from the first 10 * num_mixtures channels, built from TFP as a
MixtureSameFamily of quantized Logistics. Images are NHWC; binary values are
0/1, 8-bit values the exact integers 0..255 (in any real or integer dtype).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

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
        wide = ((logistic.scale > _wide_scale(self.dtype))
                & (y > self.low) & (y < self.high))
        # The exact branch gets a harmless scale where it is not used, so that
        # neither branch produces an infinite value or gradient.
        exact = tfd.QuantizedDistribution(
            tfd.Logistic(logistic.loc, tf.where(wide, tf.ones_like(logistic.scale),
                                                logistic.scale)),
            low=self.low, high=self.high).log_prob(y)
        return tf.where(wide, logistic.log_prob(y - 0.5), exact)


class DiscretizedLogisticMixture(tfd.Distribution):
    """The PixelCNN++ mixture of discretized logistics over one RGB pixel.

    ``params`` (..., 10 * n) holds, in PixelCNN++ order: n mixture logits, then
    for each of R, G, B: n means, n log-scales and n raw coupling coefficients,
    all on PixelCNN++'s [-1, 1] scale. The coupling (tanh of the raw values)
    shifts the means of G by c0 * R and of B by c1 * R + c2 * G. Each channel is
    a Logistic quantized to the 256 integer bins [k - 0.5, k + 0.5], with the 0
    and 255 bins open-ended, so the 256^3 probabilities of a pixel sum to one.
    Event shape [3]; values are integers 0..255.
    """

    def __init__(self, params, validate_args=False, allow_nan_stats=True,
                 name="DiscretizedLogisticMixture"):
        parameters = dict(locals())
        with tf.name_scope(name):
            self._params = tf.convert_to_tensor(params)
            if self._params.shape[-1] is None or self._params.shape[-1] % 10:
                raise ValueError(
                    "The logistic mixture needs 10 parameters per component in the "
                    f"last axis, got shape {self._params.shape}.")
            super().__init__(dtype=self._params.dtype,
                             reparameterization_type=tfd.NOT_REPARAMETERIZED,
                             validate_args=validate_args,
                             allow_nan_stats=allow_nan_stats,
                             parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(params=tfp.util.ParameterProperties(event_ndims=1))

    @property
    def num_mixtures(self) -> int:
        return self._params.shape[-1] // 10

    def _event_shape(self):
        return tf.TensorShape([3])

    def _event_shape_tensor(self):
        return tf.constant([3], dtype=tf.int32)

    def _split(self):
        """Logits (..., n) and per-channel means, log-scales, coefficients (..., 3, n)."""
        n = self.num_mixtures
        logits = self._params[..., :n]
        rest = tf.reshape(self._params[..., n:],
                          tf.concat([tf.shape(self._params)[:-1], [3, 3 * n]], 0))
        means = rest[..., :n]
        log_scales = tf.maximum(rest[..., n:2 * n], LOG_SCALE_MIN)
        coefficients = tf.tanh(rest[..., 2 * n:])
        return logits, means, log_scales, coefficients

    @staticmethod
    def _channel(mean, log_scale):
        """One channel's quantized Logistic over the integers 0..255."""
        return QuantizedLogistic(
            tfd.Logistic(loc=(mean + 1.0) * _HALF_RANGE - 0.5,
                         scale=tf.exp(log_scale) * _HALF_RANGE),
            low=0.0, high=255.0)

    def _log_prob(self, x):
        logits, means, log_scales, coefficients = self._split()
        x = tf.cast(x, self.dtype)
        scaled = x / _HALF_RANGE - 1.0
        red, green = scaled[..., 0:1], scaled[..., 1:2]
        green_shift = coefficients[..., 0, :] * red
        blue_shift = coefficients[..., 1, :] * red + coefficients[..., 2, :] * green
        coupled = means + tf.stack([tf.zeros_like(green_shift), green_shift, blue_shift],
                                   axis=-2)  # (..., 3, n)
        components = tfd.Independent(
            self._channel(tf.linalg.matrix_transpose(coupled),
                          tf.linalg.matrix_transpose(log_scales)),
            reinterpreted_batch_ndims=1)
        mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)
        return mixture.log_prob(x)

    def _sample_n(self, n, seed=None):
        component_seed, red_seed, green_seed, blue_seed = tfp.random.split_seed(
            seed, n=4, salt="DiscretizedLogisticMixture")
        logits, means, log_scales, coefficients = self._split()
        component = tfd.Categorical(logits=logits).sample(n, seed=component_seed)
        chosen = tf.one_hot(component, self.num_mixtures, dtype=self.dtype)[..., None, :]
        means, log_scales, coefficients = (
            tf.reduce_sum(chosen * t, axis=-1) for t in (means, log_scales, coefficients))

        def draw(channel, shift, channel_seed):
            value = self._channel(means[..., channel] + shift,
                                  log_scales[..., channel]).sample(seed=channel_seed)
            return value, value / _HALF_RANGE - 1.0

        red, red_scaled = draw(0, 0.0, red_seed)
        green, green_scaled = draw(1, coefficients[..., 0] * red_scaled, green_seed)
        blue, _ = draw(2, coefficients[..., 1] * red_scaled
                       + coefficients[..., 2] * green_scaled, blue_seed)
        return tf.stack([red, green, blue], axis=-1)


class BernoulliLikelihood:
    """Binary images (values 0/1): Independent Bernoulli, logits = cell channel 0."""

    cell_channels = 1
    max_value = 1.0
    binary = True

    def encoder_input(self, images):
        """What the encoder sees: the 0/1 images as they are (either scaling)."""
        return images

    def distribution(self, cells) -> tfd.Distribution:
        logits = tf.cast(cells[..., :1], tf.float32)
        return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32),
                               reinterpreted_batch_ndims=3)

    def mean_image(self, distribution, seed=None):
        """Pixel probabilities in [0, 1] (exact); ``seed`` is unused."""
        del seed
        return distribution.mean()

    def check_values(self, images, name="images"):
        """Asserts (outside XLA) that ``images`` holds only 0 and 1."""
        images = tf.cast(images, tf.float32)
        return tf.debugging.assert_equal(
            tf.reduce_all((images == 0.0) | (images == 1.0)), True,
            message=f"{name} must be binary (every value 0 or 1) for the Bernoulli "
                    "likelihood; binarize the images first.")


class LogisticMixtureLikelihood:
    """8-bit RGB (integers 0..255): PixelCNN++ discretized logistic mixture."""

    max_value = 255.0
    binary = False

    def __init__(self, num_mixtures: int = 1, num_mean_samples: int = 100,
                 encoder_input: str = "likelihood_scale"):
        self.num_mixtures = num_mixtures
        self.cell_channels = 10 * num_mixtures
        self.num_mean_samples = num_mean_samples
        self.encoder_scaling = encoder_input

    def encoder_input(self, images):
        """What the encoder sees: float images 0..255 on the mixture's [-1, 1]
        scale, computed as the authors' code does (x / 255 * 2 - 1), or in [0, 1]
        for ``encoder_input="unit_interval"``."""
        if self.encoder_scaling == "unit_interval":
            return images / self.max_value
        return images / self.max_value * 2.0 - 1.0

    def distribution(self, cells) -> tfd.Distribution:
        params = tf.cast(cells[..., :self.cell_channels], tf.float32)
        return tfd.Independent(DiscretizedLogisticMixture(params),
                               reinterpreted_batch_ndims=2)

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
            tf.reduce_all(valid), True,
            message=f"{name} must hold integer pixel values in [0, 255] for the "
                    "logistic-mixture likelihood (not images scaled to [0, 1]).")


def make_likelihood(config):
    """The likelihood a ModelConfig names."""
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    return LogisticMixtureLikelihood(config.num_mixtures, encoder_input=config.encoder_input)
