"""The VNCA: a VAE whose decoder is a neural cellular automaton.

Every random quantity (z, the non-doubling step count, samples from p(x|z))
comes from a stateless ``seed``: an int, a shape-[2] integer tensor, or None for
a fresh random one. The same seed gives the same result on any device, which
the training loop relies on for exact resume.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf.configs import ModelConfig
from vnca_tf.encoder import Encoder
from vnca_tf.layers import UpdateNet
from vnca_tf.likelihoods import make_likelihood
from vnca_tf.nca import DoublingNCA, NonDoublingNCA, damage_square

tfd = tfp.distributions


def as_seed(seed):
    """A stateless seed (a shape-[2] int32 tensor) from an int, a pair, or None
    (None draws a fresh one)."""
    if isinstance(seed, int):
        seed = [seed, 0]
    return tfp.random.sanitize_seed(seed)


def split_seed(seed, n: int):
    """``n`` independent stateless seeds from ``seed`` (see ``as_seed``)."""
    return tfp.random.split_seed(as_seed(seed), n=n)


class VNCA(keras.Model):
    """Encoder q(z|x), NCA decoder and likelihood p(x|z), prior N(0, I).

    Images are NHWC with the config's image_shape: 0/1 values for the Bernoulli
    likelihood, integers 0..255 for the logistic mixture.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.likelihood = make_likelihood(config)
        self.encoder = Encoder(config.latent_size, config.encoder_channels, name="encoder")
        self.update_net = UpdateNet(
            config.latent_size, config.hidden_size, config.update_net,
            num_residual_blocks=config.num_residual_blocks,
            num_hidden_layers=config.num_hidden_layers, name="update_net")
        if config.decoder == "doubling":
            self.decoder = DoublingNCA(self.update_net, config.num_doublings,
                                       config.steps_per_stage, name="decoder")
        else:
            self.decoder = NonDoublingNCA(self.update_net, config.image_shape[:2],
                                          config.min_steps, config.max_steps,
                                          name="decoder")
        self.encoder.build((None,) + tuple(config.image_shape))
        self.decoder.build((None, None, None, config.latent_size))
        self.built = True

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
        return self._posterior(self.check_images(images))

    def _posterior(self, images):
        """q(z|x) for images already checked and cast to float32."""
        loc, log_scale = self.encoder(images / self.likelihood.max_value)
        return tfd.Independent(tfd.Normal(loc, tf.exp(log_scale)),
                               reinterpreted_batch_ndims=1)

    def grow(self, cells, seed=None, num_steps=None, return_trajectory=False):
        """Runs the NCA from given cells (seeds, pooled or damaged states).

        For the non-doubling decoder the step count is ``num_steps`` or drawn
        from ``seed``; returns final cells, and the trajectory on request.
        """
        if self.config.decoder == "doubling":
            return self.decoder(cells, return_trajectory=return_trajectory)
        if num_steps is None:
            num_steps = self.decoder.draw_num_steps(as_seed(seed))
        return self.decoder(cells, num_steps=num_steps, return_trajectory=return_trajectory)

    def decode(self, z, seed=None, num_steps=None) -> tfd.Distribution:
        """p(x|z) for latents z (B, latent_size), batch shape (B,)."""
        return self.likelihood.distribution(
            self.grow(self.decoder.seed(z), seed, num_steps))

    def _pictures(self, distribution, seed):
        samples_seed, mean_seed = split_seed(seed, 2)
        return (distribution.sample(seed=samples_seed),
                self.likelihood.mean_image(distribution, seed=mean_seed))

    def sample(self, num_samples: int, seed=None):
        """Unconditional samples: (images sampled from p(x|z), mean images in
        [0, 1]) for z from the prior."""
        z_seed, decode_seed, picture_seed = split_seed(seed, 3)
        z = self.prior.sample(num_samples, seed=z_seed)
        return self._pictures(self.decode(z, decode_seed), picture_seed)

    def reconstruct(self, images, seed=None):
        """(sampled, mean) reconstructions decoded from the posterior means."""
        decode_seed, picture_seed = split_seed(seed, 2)
        z = self.encode(images).mean()
        return self._pictures(self.decode(z, decode_seed), picture_seed)

    def growth(self, z, seed=None, num_steps=None):
        """Mean images of every stage of growth, (T, B, H, W, C), for latents z.

        Doubling: the seed, every step and every doubling; non-doubling: the seed
        and every step (``num_steps`` of them, or a number drawn from ``seed``).
        """
        steps_seed, picture_seed = split_seed(seed, 2)
        _, trajectory = self.grow(self.decoder.seed(z), steps_seed, num_steps,
                                  return_trajectory=True)
        return self.likelihood.mean_image(self.likelihood.distribution(trajectory),
                                          seed=picture_seed)

    def damage_recovery(self, z, seed=None, num_steps=None, damage_size=None):
        """Mean images of grown samples, the same right after a square of
        ``damage_size`` cells (default: half the width) is zeroed at a random
        place, and after ``num_steps`` more steps (default: max_steps). For the
        non-doubling decoder (the paper's Fig. 9/10)."""
        if self.config.decoder != "non_doubling":
            raise ValueError("Damage recovery runs the non-doubling decoder past its "
                             "growth; this model doubles. Use a *_damage preset.")
        grow_seed, damage_seed, picture_seed = split_seed(seed, 3)
        num_steps = num_steps or self.config.max_steps
        grown = self.grow(self.decoder.seed(z), grow_seed, num_steps)
        damaged = damage_square(grown, damage_size or self.config.image_shape[1] // 2,
                                damage_seed)
        recovered = self.grow(damaged, num_steps=num_steps)
        return tuple(self.likelihood.mean_image(self.likelihood.distribution(cells),
                                                seed=picture_seed)
                     for cells in (grown, damaged, recovered))

    def elbo(self, images, beta=1.0, seed=None):
        """The beta-weighted negative ELBO with one z sample, per image, in nats.

        Returns a dict of (B,) tensors: ``loss`` = reconstruction + beta * kl,
        ``reconstruction`` = -log p(x|z), ``kl`` = KL(q(z|x) || p(z)) (analytic).
        """
        z_seed, decode_seed = split_seed(seed, 2)
        images = self.check_images(images)
        posterior = self._posterior(images)
        z = posterior.sample(seed=z_seed)
        return self.negative_elbo(images, posterior, self.grow(self.decoder.seed(z), decode_seed),
                                  beta)

    def negative_elbo(self, images, posterior, final_cells, beta=1.0):
        """The ``elbo`` terms for checked images, q(z|x) and the cells grown from
        a z drawn from it (or from pooled states, in pool training)."""
        reconstruction = -self.likelihood.distribution(final_cells).log_prob(images)
        kl = tfd.kl_divergence(posterior, self.prior)
        return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction,
                "kl": kl}

    def call(self, images, training=False):
        """The per-image loss (negative ELBO, beta = 1)."""
        del training
        return self.elbo(images)["loss"]

    def iwae(self, images, num_samples: int = 128, seed=None, chunk_size: int = 16):
        """The importance-weighted bound on log p(x) (Burda et al.), nats per image.

        log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), k = num_samples.
        All k latents are drawn at once; they are decoded ``chunk_size`` per image
        at a time, so memory stays at B * chunk_size decodes whatever k is, and
        (for the doubling decoder) the result does not depend on chunk_size.
        """
        if num_samples < 1 or chunk_size < 1:
            raise ValueError(f"num_samples and chunk_size must be >= 1, got "
                             f"{num_samples} and {chunk_size}.")
        images = self.check_images(images)
        posterior = self._posterior(images)
        z_seed, decode_seed = split_seed(seed, 2)
        z = posterior.sample(num_samples, seed=z_seed)  # (k, B, Z)
        chunk_size = min(chunk_size, num_samples)
        num_chunks, remainder = divmod(num_samples, chunk_size)

        def log_likelihood(start, size):
            chunk_seed = tf.random.experimental.stateless_fold_in(decode_seed, start)
            return self._log_likelihood(images, z[start:start + size], chunk_seed)

        chunks = tf.TensorArray(tf.float32, size=num_chunks)
        _, chunks = tf.while_loop(
            lambda i, c: i < num_chunks,
            lambda i, c: (i + 1, c.write(i, log_likelihood(i * chunk_size, chunk_size))),
            (0, chunks), maximum_iterations=num_chunks)
        log_likelihoods = tf.reshape(chunks.stack(), [-1, tf.shape(images)[0]])
        if remainder:
            log_likelihoods = tf.concat(
                [log_likelihoods, log_likelihood(num_chunks * chunk_size, remainder)], 0)
        log_weights = log_likelihoods + self.prior.log_prob(z) - posterior.log_prob(z)
        return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(float(num_samples))

    def _log_likelihood(self, images, z, seed):
        """log p(x|z) for latents z (k, B, Z) and images (B, H, W, C): (k, B)."""
        k, batch = tf.shape(z)[0], tf.shape(z)[1]
        flat_images = tf.reshape(tf.tile(images[None], [k, 1, 1, 1, 1]),
                                 tf.concat([[-1], tf.shape(images)[1:]], 0))
        flat_z = tf.reshape(z, [-1, self.config.latent_size])
        return tf.reshape(self.decode(flat_z, seed).log_prob(flat_images), [k, batch])
