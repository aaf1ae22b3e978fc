"""An exported SavedModel seen as a model: the models.GenerativeModel
interface answered through its signatures, with no Keras model rebuilt (what
a process has that reads an export, as TF Serving does)."""

import tensorflow as tf

from vnca_tf.configs import kind_of
from vnca_tf.models import storage
from vnca_tf.models.likelihoods import make_likelihood
from vnca_tf.models.seeds import to_signature
from vnca_tf.models.vae import standard_normal_prior
from vnca_tf.models.vnca import damaged_region


class LoadedModel:
    """The SavedModel version folder ``path`` through its signatures (see
    models.GenerativeModel); ``preset`` and ``training`` are its records."""

    def __init__(self, path: str):
        self.preset, self.training = storage.read_saved_model_assets(path)
        self.config = self.preset.model
        self.kind = kind_of(self.config)
        self.likelihood = make_likelihood(self.config)
        self.prior = standard_normal_prior(self.config.latent_size)
        # Kept, so that the signatures' variables live as long as this object.
        self.saved_model = tf.saved_model.load(path)
        self.signatures = self.saved_model.signatures

    def sample(self, num_samples, seed=0):
        out = self.signatures["serving_default"](
            num_samples=tf.constant(num_samples), seed=to_signature(seed)
        )
        return tf.cast(out["images"], tf.float32), out["means"]

    def reconstruct(self, images, seed=0):
        out = self.signatures["reconstruct"](
            images=tf.cast(images, tf.float32), seed=to_signature(seed)
        )
        return tf.cast(out["reconstructions"], tf.float32), out["means"]

    def encode_mean(self, images):
        return self.signatures["encode"](images=tf.cast(images, tf.float32))["mean"]

    def decode_mean(self, z, seed=0):
        return self.signatures["decode"](latents=z, seed=to_signature(seed))["means"]

    def growth_frames(self, z, seed=0):
        """Every frame of the model's full growth (the grow signature's); for
        another number of steps, rebuild it: vnca_tf.load(path)."""
        return self.signatures["grow"](latents=z, seed=to_signature(seed))["frames"]

    def damage_recovery(self, z, seed=0):
        out = self._signature("damage_recovery")(latents=z, seed=to_signature(seed))
        return out["grown"], out["damaged"], out["recovered"]

    def damaged_region(self, batch: int, seed=0):
        """Where ``damage_recovery`` with ``seed`` zeroes the cells (computed
        here, as the signature does)."""
        return damaged_region(self.config, batch, seed)

    def damage_during_growth(self, z):
        return self._signature("damage_during_growth")(latents=z)["frames"]

    @property
    def damage_kind(self):
        """The damage signature its kind has, or None (a baseline)."""
        return self.kind.damage_kind

    @property
    def growth_columns(self):
        """Frames per row of its growth pictures, as its kind says."""
        return self.kind.growth_columns

    def _signature(self, name):
        if name not in self.signatures:
            raise ValueError(
                f"This SavedModel has no {name} signature; it has "
                f"{', '.join(sorted(self.signatures))}."
            )
        return self.signatures[name]

    def iwae(self, images, num_samples: int = 128, seed=0, chunk_size: int = 16, image_ids=None):
        """VAE.iwae through the log_likelihood signature."""
        return self.iwae_bounds(images, num_samples, seed, chunk_size, image_ids)[
            self.likelihood.conventions[0]
        ]

    def iwae_bounds(
        self, images, num_samples: int = 128, seed=0, chunk_size: int = 16, image_ids=None
    ) -> dict:
        """VAE.iwae_bounds through the log_likelihood signature, which seeds each
        image by its place in the request (other ``image_ids`` are an error) and
        picks its own chunk (at most input_checks.MAX_BATCH grids decoded at
        once): ``chunk_size`` sets only the memory of a Keras model's bound, never
        its value, and an export's is its own. An export older than the
        conventions gives its own only."""
        if image_ids is not None:
            raise ValueError(
                "An exported model seeds each image by its place in the request; "
                "image_ids need the model rebuilt (loading.restore_saved_model)."
            )
        del chunk_size
        out = self.signatures["log_likelihood"](
            images=tf.cast(images, tf.float32), k=tf.constant(num_samples), seed=to_signature(seed)
        )
        bounds = {self.likelihood.conventions[0]: out["log_likelihood"]}
        bounds.update(
            {
                name: out[f"log_likelihood_{name}"]
                for name in self.likelihood.conventions
                if f"log_likelihood_{name}" in out
            }
        )
        return bounds
