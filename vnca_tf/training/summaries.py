"""TensorBoard summaries of a training run (tf.summary event files).

model_dir/train: loss, reconstruction, KL, ELBO in nats and bits/dim, gradient
norm, learning rate, steps/s, non-finite update count, pool size; at each
skipped update, what was not finite (nonfinite/likelihood and nonfinite/kl:
images; nonfinite/gradient: 1 if the gradient was; nonfinite/float16_overflow:
1 if it was a loss-scale overflow); images of
samples, sample means, reconstructions, a growth trajectory and (non-doubling
models) damage then recovery. model_dir/validation: the validation loss.
"""

import os

import tensorflow as tf

from vnca_tf.common.units import bits_per_dim
from vnca_tf.configs import Preset
from vnca_tf.data.pictures import image_grid

NUM_PICTURES = 8


def describe_loss(loss_nats: float, preset: Preset) -> str:
    """A negative ELBO in the paper's terms: "ELBO -91.23 nats" (binary
    images) or "4.8312 bits/dim" (RGB, the negative ELBO per dimension of
    the dataset's images)."""
    if preset.model.likelihood == "bernoulli":
        return f"ELBO {-loss_nats:.2f} nats"
    return f"{bits_per_dim(loss_nats, preset.num_dimensions):.4f} bits/dim"


class Writer:
    """Writes a run's summaries; a no-op on workers other than the chief."""

    def __init__(self, model_dir: str, enabled: bool = True):
        if enabled:
            self.train = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
            self.validation = tf.summary.create_file_writer(os.path.join(model_dir, "validation"))
        else:
            self.train = self.validation = tf.summary.create_noop_writer()
        self.enabled = enabled

    def _likelihood_scalars(self, elbo_nats, preset):
        tf.summary.scalar("elbo_nats", elbo_nats)
        tf.summary.scalar("bits_per_dim", bits_per_dim(-elbo_nats, preset.num_dimensions))

    def scalars(self, step, metrics, preset, optimizer, nonfinite_total, pool_size=None):
        with self.train.as_default(step=step):
            for name in (
                "loss",
                "reconstruction",
                "kl",
                "gradient_norm",
                "steps_per_s",
                "loss_scale",
            ):
                tf.summary.scalar(name, metrics[name])
            self._likelihood_scalars(-(metrics["reconstruction"] + metrics["kl"]), preset)
            tf.summary.scalar("learning_rate", float(optimizer.learning_rate.numpy()))
            tf.summary.scalar("nonfinite_updates", nonfinite_total)
            if pool_size is not None:
                tf.summary.scalar("pool_size", pool_size)

    def nonfinite_scalars(self, step, metrics):
        """What was not finite in the update skipped at ``step``: the images
        with a non-finite likelihood and KL, and whether the gradient was."""
        with self.train.as_default(step=step):
            for part in ("likelihood", "kl", "gradient"):
                tf.summary.scalar(f"nonfinite/{part}", metrics[f"nonfinite_{part}"])
            tf.summary.scalar("nonfinite/float16_overflow", metrics["float16_overflow"])

    def validation_scalars(self, step, loss, preset):
        with self.validation.as_default(step=step):
            tf.summary.scalar("loss", loss)
            self._likelihood_scalars(-loss, preset)

    def images(self, step, model, images, seed):
        """Pictures of the model now: samples, reconstructions of ``images``,
        growth and (non-doubling) damage recovery; only on the chief."""
        if not self.enabled:
            return
        scale = model.likelihood.max_value
        images = images[:NUM_PICTURES]
        samples, means = model.sample(NUM_PICTURES, seed=[seed, step])
        recon_samples, recon_means = model.reconstruct(images, seed=[seed, step])
        originals = tf.cast(images, tf.float32) / scale
        pictures = {
            "samples/samples": image_grid(samples / scale, NUM_PICTURES),
            "samples/means": image_grid(means, NUM_PICTURES),
            "reconstructions/samples": image_grid(
                tf.concat([originals, recon_samples / scale], 0), len(images)
            ),
            "reconstructions/means": image_grid(
                tf.concat([originals, recon_means], 0), len(images)
            ),
        }
        z = model.prior.sample(1, seed=[seed, step])
        if model.growth_columns:  # A baseline has no growth to show.
            growth = model.growth_frames(z, seed=[seed, step])
            pictures["growth/means"] = image_grid(growth[:, 0], model.growth_columns)
        if model.damage_kind == "damage_recovery":
            rows = model.damage_recovery(
                model.prior.sample(NUM_PICTURES, seed=[step, seed]), seed=[seed, step]
            )
            pictures["damage/recovery"] = image_grid(tf.concat(rows, 0), NUM_PICTURES)
        with self.train.as_default(step=step):
            for name, grid in pictures.items():
                tf.summary.image(name, grid[None])

    def flush(self):
        self.train.flush()
        self.validation.flush()
