"""What a VAE shows people: samples, reconstructions, mean images and growth
frames, each from a stateless seed as models.vae says (a mixin of models.vae.VAE,
which gives it ``decode``, ``encode_mean``, ``likelihood`` and ``prior``)."""

from vnca_tf.models.seeds import split_seed


class Sampling:
    """Samples, reconstructions and mean images of a VAE."""

    def mean_image_of(self, cells, seed=None):
        """Mean images in [0, 1] of p(x|cells) for grown cells (..., H, W, channels)."""
        return self.likelihood.mean_image(self.likelihood.distribution(cells), seed=seed)

    @staticmethod
    def _picture_seeds(seed):
        """(decode, samples, mean) seeds of decode_pictures and decode_mean."""
        decode_seed, picture_seed = split_seed(seed, 2)
        return (decode_seed, *split_seed(picture_seed, 2))

    def decode_pictures(self, z, seed=None):
        """(images sampled from p(x|z), mean images in [0, 1]) for latents z."""
        decode_seed, samples_seed, mean_seed = self._picture_seeds(seed)
        distribution = self.decode(z, decode_seed)
        return (
            distribution.sample(seed=samples_seed),
            self.likelihood.mean_image(distribution, seed=mean_seed),
        )

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

    def growth_frames(self, z, seed=None):
        """The one 'frame' of a decoder that does not grow: the mean images of
        z, (1, B, H, W, C)."""
        return self.decode_mean(z, seed)[None]
