"""SavedModel export for TF Serving and plain TensorFlow, and loading it back.

``export(model, preset, "exports/mnist")`` (or ``python export.py
--model_dir=runs/mnist --export_dir=exports/mnist``) writes exports/mnist/1/
(the layout TF Serving watches) with these signatures
(images are float32 NHWC holding the data's values: 0/1 for binary models,
integers 0..255 for RGB; ``seed`` is an int64 scalar, negative for a fresh
random seed):

* ``serving_default`` (sample): num_samples (int32) , seed -> images (uint8,
  the data's values), means (float32 in [0, 1]);
* ``reconstruct``: images, seed -> reconstructions (uint8), means (float32);
* ``encode``: images -> mean, scale (float32, the posterior q(z|x));
* ``decode``: latents, seed -> means (float32), samples (uint8);
* ``log_likelihood``: images, k (int32), seed -> log_likelihood (float32, the
  IWAE-k bound in nats per image; RGB models also give it in each bin
  convention, log_likelihood_pixelcnn and log_likelihood_exact);
* ``grow``: latents, seed -> frames (float32, (T, B, H, W, C) mean images of
  every step of growth);
* ``damage_recovery`` (non-doubling VNCA): latents, seed -> grown, damaged,
  recovered (float32 mean images: grown for max_steps, a random square of half
  the width zeroed, then max_steps more);
* ``damage_during_growth`` (doubling VNCA): latents -> frames (float32,
  (num_doublings + 1, B, H, W, C): the right half zeroed at stage 0, 1, ...);
* ``browser_encode``, ``browser_initial_cells``, ``browser_step``,
  ``browser_double`` (doubling), ``browser_picture`` (VNCAs of binary images):
  the step-by-step graphs of the browser demo (vnca_tf.browser_graphs), which
  vnca_tf.tfjs converts to TensorFlow.js.

The signatures declare the model's image and latent sizes (batch free), and
every input is checked in the graph (vnca_tf.input_checks): a wrong shape, a
NaN or infinity, a value out of range, or a count past the limits (1,024
samples, images or latents a call) fails with a message naming what is
expected (a wrong dtype is refused by the signature).
The training configuration is stored as assets.extra/vnca_config.json, how it
was trained (steps, wall time, command) as assets.extra/vnca_training.json
(models.storage).
"""

import os
from typing import Optional

import tensorflow as tf

from vnca_tf.configs import Preset
from vnca_tf.models import storage
from vnca_tf.models.seeds import from_signature
from vnca_tf.serving import browser_graphs, input_checks


class ServingModule(tf.Module):
    """The signatures of a trained model, as tf.functions over its weights."""

    def __init__(self, model):
        super().__init__(name="vnca")
        self.model = model
        config = model.config
        height, width, channels = config.image_shape
        self._shape = (height, width, channels)
        self._max_value = model.likelihood.max_value
        # Static sizes, so that saved_model_cli and TF Serving show them; the
        # checks below still refuse other sizes at run time.
        images = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")
        latents = tf.TensorSpec([None, config.latent_size], tf.float32, name="latents")
        seed = tf.TensorSpec([], tf.int64, name="seed")
        self.sample = tf.function(
            self._sample, input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"), seed]
        )
        self.reconstruct = tf.function(self._reconstruct, input_signature=[images, seed])
        self.encode = tf.function(self._encode, input_signature=[images])
        self.decode = tf.function(self._decode, input_signature=[latents, seed])
        self.log_likelihood = tf.function(
            self._log_likelihood,
            input_signature=[images, tf.TensorSpec([], tf.int32, name="k"), seed],
        )
        self.grow = tf.function(self._grow, input_signature=[latents, seed])
        # Only the damage signature the model has (saving traces every one).
        damage = {
            "damage_recovery": (self._damage_recovery, [latents, seed]),
            "damage_during_growth": (self._damage_during_growth, [latents]),
        }
        self.damage = {
            kind: tf.function(function, input_signature=inputs)
            for kind, (function, inputs) in damage.items()
            if kind == model.damage_kind
        }
        self.browser = browser_graphs.signatures(model)

    def signatures(self):
        return {
            "serving_default": self.sample,
            "reconstruct": self.reconstruct,
            "encode": self.encode,
            "decode": self.decode,
            "log_likelihood": self.log_likelihood,
            "grow": self.grow,
            **self.damage,
            **self.browser,
        }

    def _checked_images(self, images):
        return input_checks.images(images, self.model)

    def _checked_latents(self, latents):
        return input_checks.latents(latents, self.model.config.latent_size)

    def _as_images(self, values):
        return tf.cast(tf.round(values), tf.uint8)

    def _sample(self, num_samples, seed):
        num_samples = input_checks.checked(
            num_samples,
            [
                input_checks.count(
                    num_samples,
                    "num_samples",
                    input_checks.MAX_BATCH,
                    "; ask for more in several calls",
                )
            ],
        )
        samples, means = self.model.sample(num_samples, seed=from_signature(seed))
        return {"images": self._as_images(samples), "means": means}

    def _reconstruct(self, images, seed):
        images = self._checked_images(images)
        samples, means = self.model.reconstruct(images, seed=from_signature(seed))
        return {"reconstructions": self._as_images(samples), "means": means}

    def _encode(self, images):
        images = self._checked_images(images)
        posterior = self.model.encode(images)
        return {"mean": posterior.mean(), "scale": posterior.stddev()}

    def _decode(self, latents, seed):
        samples, means = self.model.decode_pictures(
            self._checked_latents(latents), seed=from_signature(seed)
        )
        return {"means": means, "samples": self._as_images(samples)}

    def _log_likelihood(self, images, k, seed):
        images = self._checked_images(images)
        k = input_checks.checked(
            k,
            [
                input_checks.count(
                    k * tf.shape(images)[0],
                    "k x the batch of images",
                    input_checks.MAX_LATENTS,
                    "; evaluate fewer images a call",
                ),
                input_checks.count(k, "k", input_checks.MAX_LATENTS),
            ],
        )
        # At most MAX_BATCH grids decoded at once, as in decode; the rest of a
        # call is its k x B latents (input_checks.MAX_LATENTS).
        chunk = tf.maximum(1, input_checks.MAX_BATCH // tf.shape(images)[0])
        bounds = self.model.iwae_bounds(images, k, seed=from_signature(seed), chunk_size=chunk)
        conventions = self.model.likelihood.conventions
        outputs = {"log_likelihood": bounds[conventions[0]]}
        if len(conventions) > 1:
            outputs.update({f"log_likelihood_{name}": bounds[name] for name in conventions})
        return outputs

    def _grow(self, latents, seed):
        frames = self.model.growth_frames(self._checked_latents(latents), seed=from_signature(seed))
        return {"frames": frames}

    def _damage_recovery(self, latents, seed):
        grown, damaged, recovered = self.model.damage_recovery(
            self._checked_latents(latents), seed=from_signature(seed)
        )
        return {"grown": grown, "damaged": damaged, "recovered": recovered}

    def _damage_during_growth(self, latents):
        return {"frames": self.model.damage_during_growth(self._checked_latents(latents))}


def export(
    model, preset: Preset, export_dir: str, version: int = 1, training: Optional[dict] = None
) -> str:
    """Writes the SavedModel of ``model`` to export_dir/version, with its preset
    and ``training`` record (run_folder.training_record); returns the path."""
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; pick another --version or folder.")
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):  # Before the tracing.
        raise FileExistsError(f"{export_dir} is a file; give --export_dir a folder.")
    module = ServingModule(model)
    # Variables in shards of at most 4 MB, so that small models can live in git.
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=(
            tf.train.experimental.MaxShardSizePolicy(max_shard_size=4_000_000)
        )
    )
    tf.saved_model.save(module, path, signatures=module.signatures(), options=options)
    storage.write_saved_model_assets(path, preset, training)
    return path
