"""The VAE machinery every model here shares: encoder, prior, likelihood,
ELBO, the IWAE bound, samples and reconstructions.

Every random quantity (z, the non-doubling step count, samples from p(x|z))
comes from a stateless ``seed``: an int, a shape-[2] integer tensor, or None for
a fresh random one. The same seed gives the same result on the same device and
compilation mode, which the training loop relies on for exact resume.
"""

import dataclasses

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf.configs import ModelConfig, get_preset, kind_of, model_config_from_dict
from vnca_tf.models import bounds
from vnca_tf.models.encoder import Encoder
from vnca_tf.models.likelihoods import make_likelihood
from vnca_tf.models.sampling import Sampling
from vnca_tf.models.seeds import as_seed, split_seed

tfd = tfp.distributions


def standard_normal_prior(latent_size: int) -> tfd.Distribution:
    """p(z) = N(0, I) over ``latent_size`` dimensions."""
    return tfd.Independent(tfd.Normal(tf.zeros(latent_size), 1.0), reinterpreted_batch_ndims=1)


class VAE(Sampling, keras.Model):
    """Encoder q(z|x) (appendix A.5), prior N(0, I), a decoder to cell states
    (``decode_cells``, defined by subclasses) and the likelihood p(x|z) read
    from them.

    Images are NHWC with the config's image_shape: 0/1 values for the Bernoulli
    likelihood, integers 0..255 for the logistic mixture.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.kind = kind_of(config)
        self.likelihood = make_likelihood(config)
        self.encoder = Encoder(config.latent_size, config.encoder_channels, name="encoder")
        self.encoder.build((None,) + tuple(config.image_shape))

    @classmethod
    def from_preset(cls, name: str, **kwargs):
        """A fresh (untrained) model of the preset ``name`` (or "FILE.py:NAME"),
        e.g. ``VNCA.from_preset("mnist")``."""
        return cls(get_preset(name).model, **kwargs)

    def get_config(self):
        """The ModelConfig as a dict (``keras.models.load_model`` rebuilds from it)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(model_config_from_dict(config.pop("config")), **config)

    def decode_cells(
        self, z, seed=None, num_steps=None, rows=None, start_cells=None, use_start=None
    ):
        """The decoder's output grid (B, H, W, channels) for latents (B, Z).
        ``seed``: the decoder's randomness; ``rows`` = (first, total): z are rows
        first... of a batch of ``total`` (decoders whose randomness is per image
        draw it as for that batch); ``start_cells``/``use_start``: see
        ``loss_terms``."""
        raise NotImplementedError

    def decode_cells_per_example(self, z, seeds):
        """The decoder's output grid for latents z (N, latent_size), each with
        its own randomness from its row of ``seeds`` (N, 2), so that a latent
        decodes the same in any batch (evaluation); this default is for
        decoders without randomness."""
        del seeds
        return self.decode_cells(z)

    @property
    def damage_kind(self):
        """The damage figure and signature it has ("damage_recovery",
        "damage_during_growth" or None), as its kind says."""
        return self.kind.damage_kind

    @property
    def growth_columns(self):
        """Frames per row of its growth pictures (None: it does not grow)."""
        return self.kind.growth_columns

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
        return standard_normal_prior(self.config.latent_size)

    def check_images(self, images, name: str = "images"):
        """Checks shape (statically) and values (in eager and graph mode, not under
        XLA) against the config; returns the images as float32."""
        expected = tuple(self.config.image_shape)
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[1:] != expected:
            raise ValueError(
                f"{name} must have shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) (NHWC) for this {self.config.likelihood} model, got "
                f"shape {shape}."
            )
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
        loc, log_scale = (
            tf.cast(t, tf.float32) for t in self.encoder(self.likelihood.encoder_input(images))
        )
        config = self.config
        if config.posterior_loc_bound is not None:
            loc = tf.clip_by_value(loc, -config.posterior_loc_bound, config.posterior_loc_bound)
        if config.posterior_log_scale_bound is not None:
            log_scale = tf.clip_by_value(
                log_scale, -config.posterior_log_scale_bound, config.posterior_log_scale_bound
            )
        return tfd.Independent(tfd.Normal(loc, tf.exp(log_scale)), reinterpreted_batch_ndims=1)

    def decode(self, z, seed=None, num_steps=None) -> tfd.Distribution:
        """p(x|z) for latents z (B, latent_size), batch shape (B,)."""
        return self.likelihood.distribution(self.decode_cells(z, seed, num_steps))

    def encode_mean(self, images):
        """The posterior means E[z|x], (B, latent_size)."""
        return self.encode(images).mean()

    def loss_terms(
        self,
        images,
        noise,
        beta=1.0,
        start_cells=None,
        use_start=None,
        num_steps=None,
        seed=None,
        rows=None,
    ):
        """The beta-weighted negative ELBO per image (bounds.loss_terms)."""
        return bounds.loss_terms(
            self, images, noise, beta, start_cells, use_start, num_steps, seed, rows
        )

    def negative_elbo(self, images, beta=1.0, seed=None):
        """``loss_terms`` with one z per image drawn from ``seed``."""
        noise_seed, decode_seed = split_seed(seed, 2)
        noise = tf.random.stateless_normal(
            [tf.shape(images)[0], self.config.latent_size], noise_seed
        )
        return self.loss_terms(images, noise, beta, seed=decode_seed)

    def call(self, images, training=False):
        """The per-image loss (negative ELBO, beta = 1)."""
        del training
        return self.negative_elbo(images)["loss"]

    def iwae(self, images, num_samples=128, seed=None, chunk_size: int = 16, image_ids=None):
        """The importance-weighted bound on log p(x) (Burda et al.), nats per
        image, in the likelihood's own convention (see ``iwae_bounds``)."""
        bounds = self.iwae_bounds(images, num_samples, seed, chunk_size, image_ids)
        return bounds[self.likelihood.conventions[0]]

    def iwae_bounds(
        self, images, num_samples=128, seed=None, chunk_size: int = 16, image_ids=None
    ) -> dict:
        """The IWAE bound in each of the likelihood's conventions (bounds.iwae_bounds),
        always as a graph: run eagerly, its per-sample seeding is a Python loop
        (minutes for IWAE-128 of a few images, against seconds)."""
        return self._iwae_bounds_graph(images, num_samples, as_seed(seed), chunk_size, image_ids)

    @tf.function
    def _iwae_bounds_graph(self, images, num_samples, seed, chunk_size, image_ids):
        return bounds.iwae_bounds(self, images, num_samples, seed, chunk_size, image_ids)
