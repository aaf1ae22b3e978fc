"""The VAE machinery every model here shares: encoder, prior, likelihood,
ELBO, the IWAE bound, samples and reconstructions.

Every random quantity (z, the non-doubling step count, samples from p(x|z))
comes from a stateless ``seed``: an int, a shape-[2] integer tensor, or None for
a fresh random one. The same seed gives the same result on the same device and
compilation mode, which the training loop relies on for exact resume.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf.configs import ModelConfig
from vnca_tf.encoder import Encoder
from vnca_tf.likelihoods import make_likelihood

tfd = tfp.distributions


def as_seed(seed):
    """A stateless seed (a shape-[2] int32 tensor) from an int, a pair (of any
    integer dtype), or None (None draws a fresh one)."""
    if isinstance(seed, int):
        seed = [seed, 0]
    elif tf.is_tensor(seed):
        seed = tf.cast(seed, tf.int32)
    return tfp.random.sanitize_seed(seed)


def split_seed(seed, n: int):
    """``n`` independent stateless seeds from ``seed`` (see ``as_seed``)."""
    return tfp.random.split_seed(as_seed(seed), n=n)


class VAE(keras.Model):
    """Encoder q(z|x) (appendix A.5), prior N(0, I), a decoder to cell states
    (``decode_cells``, defined by subclasses) and the likelihood p(x|z) read
    from them.

    Images are NHWC with the config's image_shape: 0/1 values for the Bernoulli
    likelihood, integers 0..255 for the logistic mixture.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.likelihood = make_likelihood(config)
        self.encoder = Encoder(config.latent_size, config.encoder_channels, name="encoder")
        self.encoder.build((None,) + tuple(config.image_shape))

    def decode_cells(self, z, seed=None, num_steps=None, rows=None, start_cells=None,
                     use_start=None):
        """The decoder's output grid (B, H, W, channels) for latents (B, Z).
        ``seed``: the decoder's randomness; ``rows`` = (first, total): z are rows
        first... of a batch of ``total`` (decoders whose randomness is per image
        draw it as for that batch); ``start_cells``/``use_start``: see
        ``loss_terms``."""
        raise NotImplementedError

    # What a kind of model can show (VNCA overrides them): the damage figure and
    # signature it has ("damage_recovery", "damage_during_growth" or None), and
    # the frames per row of its growth pictures (None: it does not grow).
    damage_kind = None
    growth_columns = None

    def growth_frames(self, z, seed=None):
        """The one 'frame' of a decoder that does not grow: the mean images of
        z, (1, B, H, W, C)."""
        return self.decode_mean(z, seed)[None]

    def draw_num_steps(self, seed):
        """The decoder's number of steps for one batch, drawn from ``seed``; None
        for decoders with a fixed number (the default)."""
        del seed
        return None

    @property
    def pool_cell_shape(self):
        """The shape of one image's grown cells that pool training continues
        from, or None for models that cannot continue growing (the default)."""
        return None

    @property
    def prior(self) -> tfd.Distribution:
        """p(z) = N(0, I) over the latent_size dimensions."""
        return tfd.Independent(tfd.Normal(tf.zeros(self.config.latent_size), 1.0),
                               reinterpreted_batch_ndims=1)

    def check_images(self, images, name: str = "images"):
        """Checks shape (statically) and values (in eager and graph mode, not under
        XLA) against the config; returns the images as float32."""
        expected = tuple(self.config.image_shape)
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[1:] != expected:
            raise ValueError(
                f"{name} must have shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (NHWC) for this {self.config.likelihood} model, got "
                f"shape {shape}.")
        dtype = tf.as_dtype(images.dtype)
        if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
            raise TypeError(f"{name} must be a real or integer tensor, got {dtype.name}.")
        images = tf.cast(images, tf.float32)
        with tf.control_dependencies([self.likelihood.check_values(images, name)]):
            return tf.identity(images)

    def encode(self, images) -> tfd.Distribution:
        """q(z|x): a diagonal Gaussian with batch shape (B,), event (latent_size,)."""
        return self.posterior_of_checked(self.check_images(images))

    def posterior_of_checked(self, images):
        """q(z|x) for images already checked and cast to float32; its mean and
        log sigma clamped where the config says so."""
        loc, log_scale = (tf.cast(t, tf.float32)
                          for t in self.encoder(self.likelihood.encoder_input(images)))
        config = self.config
        if config.posterior_loc_bound is not None:
            loc = tf.clip_by_value(loc, -config.posterior_loc_bound,
                                   config.posterior_loc_bound)
        if config.posterior_log_scale_bound is not None:
            log_scale = tf.clip_by_value(log_scale, -config.posterior_log_scale_bound,
                                         config.posterior_log_scale_bound)
        return tfd.Independent(tfd.Normal(loc, tf.exp(log_scale)),
                               reinterpreted_batch_ndims=1)

    def decode(self, z, seed=None, num_steps=None) -> tfd.Distribution:
        """p(x|z) for latents z (B, latent_size), batch shape (B,)."""
        return self.likelihood.distribution(self.decode_cells(z, seed, num_steps))

    def mean_image_of(self, cells, seed=None):
        """Mean images in [0, 1] of p(x|cells) for grown cells (..., H, W, channels)."""
        return self.likelihood.mean_image(self.likelihood.distribution(cells), seed=seed)

    def encode_mean(self, images):
        """The posterior means E[z|x], (B, latent_size)."""
        return self.encode(images).mean()

    @staticmethod
    def _picture_seeds(seed):
        """(decode, samples, mean) seeds of decode_pictures and decode_mean."""
        decode_seed, picture_seed = split_seed(seed, 2)
        return (decode_seed, *split_seed(picture_seed, 2))

    def decode_pictures(self, z, seed=None):
        """(images sampled from p(x|z), mean images in [0, 1]) for latents z."""
        decode_seed, samples_seed, mean_seed = self._picture_seeds(seed)
        distribution = self.decode(z, decode_seed)
        return (distribution.sample(seed=samples_seed),
                self.likelihood.mean_image(distribution, seed=mean_seed))

    def decode_mean(self, z, seed=None):
        """Mean images in [0, 1] of p(x|z) for latents z (those of decode_pictures
        with the same seed, without drawing the samples)."""
        decode_seed, _, mean_seed = self._picture_seeds(seed)
        return self.likelihood.mean_image(self.decode(z, decode_seed), seed=mean_seed)

    def sample(self, num_samples, seed=None):
        """Unconditional samples: (images sampled from p(x|z), mean images in
        [0, 1]) for z from the prior."""
        z_seed, decode_seed = split_seed(seed, 2)
        return self.decode_pictures(self.prior.sample(num_samples, seed=z_seed), decode_seed)

    def reconstruct(self, images, seed=None):
        """(sampled, mean) reconstructions decoded from the posterior means."""
        return self.decode_pictures(self.encode_mean(images), seed)

    def loss_terms(self, images, noise, beta=1.0, start_cells=None, use_start=None,
                   num_steps=None, seed=None, rows=None):
        """The beta-weighted negative ELBO per image, in nats, for z = mean +
        stddev * ``noise`` under q(z|x): the one loss of training and validation.

        ``noise`` (B, latent_size) is standard normal; ``seed`` draws the
        decoder's randomness (see ``decode_cells``, like ``num_steps`` and
        ``rows``). Where ``use_start`` (B,) is true, an image's cells start
        from ``start_cells`` (pooled states, without their gradient) instead of
        its z (pool training; models that grow cells only).

        Returns a dict of (B,) tensors: ``loss`` = reconstruction + beta * kl,
        ``reconstruction`` = -log p(x|z), ``kl`` = KL(q(z|x) || p(z))
        (analytic), and the decoder's ``final_cells``.
        """
        images = self.check_images(images)
        posterior = self.posterior_of_checked(images)
        z = posterior.mean() + posterior.stddev() * noise
        final_cells = self.decode_cells(z, seed, num_steps, rows, start_cells, use_start)
        reconstruction = -self.likelihood.distribution(final_cells).log_prob(images)
        kl = tfd.kl_divergence(posterior, self.prior)
        return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction,
                "kl": kl, "final_cells": final_cells}

    def negative_elbo(self, images, beta=1.0, seed=None):
        """``loss_terms`` with one z per image drawn from ``seed``."""
        noise_seed, decode_seed = split_seed(seed, 2)
        noise = tf.random.stateless_normal(
            [tf.shape(images)[0], self.config.latent_size], noise_seed)
        return self.loss_terms(images, noise, beta, seed=decode_seed)

    def call(self, images, training=False):
        """The per-image loss (negative ELBO, beta = 1)."""
        del training
        return self.negative_elbo(images)["loss"]

    def iwae(self, images, num_samples=128, seed=None, chunk_size: int = 16):
        """The importance-weighted bound on log p(x) (Burda et al.), nats per
        image, in the likelihood's own convention (see ``iwae_bounds``)."""
        bounds = self.iwae_bounds(images, num_samples, seed, chunk_size)
        return bounds[self.likelihood.conventions[0]]

    def iwae_bounds(self, images, num_samples=128, seed=None, chunk_size: int = 16) -> dict:
        """The importance-weighted bound on log p(x) (Burda et al.), nats per image,
        in each of the likelihood's conventions ({name: (B,)}; the logistic
        mixture's "pixelcnn" and "exact"), from the same importance samples.

        log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), k = num_samples
        (an int, or a scalar tensor, e.g. in a SavedModel signature). All k latents
        are drawn at once; they are decoded ``chunk_size`` per image at a time, so
        memory stays at B * chunk_size decodes whatever k is, and (for the
        doubling decoder) the result does not depend on chunk_size.
        """
        if chunk_size < 1 or (isinstance(num_samples, int) and num_samples < 1):
            raise ValueError(f"num_samples and chunk_size must be >= 1, got "
                             f"{num_samples} and {chunk_size}.")
        if isinstance(num_samples, int):
            chunk_size = min(chunk_size, num_samples)
        else:
            num_samples = tf.convert_to_tensor(num_samples, tf.int32)
            tf.debugging.assert_positive(num_samples, message="k (num_samples) must be >= 1.")
        images = self.check_images(images)
        posterior = self.posterior_of_checked(images)
        z_seed, decode_seed = split_seed(seed, 2)
        z = posterior.sample(num_samples, seed=z_seed)  # (k, B, Z)
        num_chunks = (num_samples + chunk_size - 1) // chunk_size
        padded = tf.pad(z, [[0, num_chunks * chunk_size - num_samples], [0, 0], [0, 0]])
        conventions = self.likelihood.conventions

        def chunk(i, chunks):
            start = i * chunk_size
            chunk_seed = tf.random.experimental.stateless_fold_in(decode_seed, start)
            log_likelihoods = self._log_likelihoods(
                images, padded[start:start + chunk_size], chunk_seed)
            return i + 1, chunks.write(i, tf.stack([log_likelihoods[name]
                                                    for name in conventions]))

        chunks = tf.TensorArray(tf.float32, size=num_chunks)
        _, chunks = tf.while_loop(lambda i, c: i < num_chunks, chunk, (0, chunks),
                                  maximum_iterations=num_chunks)
        # (chunks, conventions, chunk, B) -> (conventions, k, B)
        stacked = tf.transpose(chunks.stack(), [1, 0, 2, 3])
        log_likelihoods = tf.reshape(stacked, [len(conventions), -1,
                                               tf.shape(images)[0]])[:, :num_samples]
        log_ratios = self.prior.log_prob(z) - posterior.log_prob(z)
        log_k = tf.math.log(tf.cast(num_samples, tf.float32))
        return {name: tf.reduce_logsumexp(log_likelihoods[index] + log_ratios, axis=0) - log_k
                for index, name in enumerate(conventions)}

    def _log_likelihoods(self, images, z, seed) -> dict:
        """log p(x|z) in each of the likelihood's conventions, for latents z
        (k, B, Z) and images (B, H, W, C): {name: (k, B)}."""
        k, batch = tf.shape(z)[0], tf.shape(z)[1]
        flat_images = tf.reshape(tf.tile(images[None], [k, 1, 1, 1, 1]),
                                 tf.concat([[-1], tf.shape(images)[1:]], 0))
        flat_z = tf.reshape(z, [-1, self.config.latent_size])
        cells = self.decode_cells(flat_z, seed)
        return {name: tf.reshape(log_prob, [k, batch])
                for name, log_prob in self.likelihood.log_probs(cells, flat_images).items()}
