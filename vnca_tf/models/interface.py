"""The model interface that evaluation, the figures and the summaries use.

A trained VAE (a VNCA or a baseline) and an exported SavedModel seen through
its signatures (serving.loaded.LoadedModel) both satisfy it, so the code that
measures and draws a model never asks which one it has.
"""

from typing import Optional, Protocol, Tuple

from vnca_tf.configs import ModelConfig


class GenerativeModel(Protocol):
    """What a model answers. Images are NHWC with the data's values (0/1, or
    integers 0..255); mean images are in [0, 1]; seeds are ints or pairs."""

    config: ModelConfig

    @property
    def likelihood(self):
        """p(x|z)'s family (models.likelihoods): its value range, conventions."""

    @property
    def prior(self):
        """p(z), a TFP distribution over latents."""

    @property
    def damage_kind(self) -> Optional[str]:
        """ "damage_recovery", "damage_during_growth", or None."""

    @property
    def growth_columns(self) -> Optional[int]:
        """Frames per row of a growth picture, or None (it does not grow)."""

    def sample(self, num_samples, seed=None) -> Tuple:
        """(sampled images, mean images) of latents from the prior."""

    def reconstruct(self, images, seed=None) -> Tuple:
        """(sampled, mean) reconstructions of ``images``."""

    def encode_mean(self, images):
        """The posterior means E[z|x], (B, latent_size)."""

    def decode_mean(self, z, seed=None):
        """Mean images of p(x|z)."""

    def growth_frames(self, z, seed=None):
        """Mean images of every step of its full growth, (T, B, H, W, C) (a
        VNCA's own takes num_steps too; an export grows for its full count)."""

    def damage_recovery(self, z, seed=None):
        """(grown, damaged, recovered) mean images (non-doubling VNCAs)."""

    def damaged_region(self, batch, seed=None):
        """Where damage_recovery with ``seed`` erases: (batch, H, W, 1), 1 inside."""

    def damage_during_growth(self, z):
        """Mean images with the right half zeroed at each stage (doubling VNCAs)."""

    def iwae(self, images, num_samples=128, seed=None, chunk_size=16, image_ids=None):
        """The IWAE-k bound on log p(x) in nats per image, in the likelihood's
        own convention."""

    def iwae_bounds(
        self, images, num_samples=128, seed=None, chunk_size=16, image_ids=None
    ) -> dict:
        """The same bound in each of the likelihood's conventions; each image's
        randomness from the seed and its id (default: its place in the batch)."""
