"""SavedModel export for TF Serving and plain TensorFlow, and loading it back.

``export(model, preset, "exports/mnist")`` (or ``python export.py
--model_dir=runs/mnist --export_dir=exports/mnist``) writes exports/mnist/1/ (the layout TF Serving watches) with these signatures
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
was trained (steps, wall time, command) as assets.extra/vnca_training.json.
"""

import dataclasses
import json
import os
from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf import browser_graphs, input_checks
from vnca_tf.configs import Preset, preset_from_dict
from vnca_tf.likelihoods import make_likelihood
from vnca_tf.model import build_model
from vnca_tf.run_folder import SAVED_MODEL_CONFIG, read_weights

TRAINING_ASSET = os.path.join("assets.extra", "vnca_training.json")
_CHUNK = 16  # Importance samples decoded at once in log_likelihood.


def _seed_pair(seed):
    """A stateless seed from an int64 scalar; negative means a fresh random one."""
    given = tf.cast(tf.stack([seed, tf.zeros_like(seed)]), tf.int32)
    fresh = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    return tf.where(seed < 0, fresh, given)


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
        self.sample = tf.function(self._sample, input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"), seed])
        self.reconstruct = tf.function(self._reconstruct, input_signature=[images, seed])
        self.encode = tf.function(self._encode, input_signature=[images])
        self.decode = tf.function(self._decode, input_signature=[latents, seed])
        self.log_likelihood = tf.function(self._log_likelihood, input_signature=[
            images, tf.TensorSpec([], tf.int32, name="k"), seed])
        self.grow = tf.function(self._grow, input_signature=[latents, seed])
        # Only the damage signature the model has (saving traces every one).
        damage = {"damage_recovery": (self._damage_recovery, [latents, seed]),
                  "damage_during_growth": (self._damage_during_growth, [latents])}
        self.damage = {kind: tf.function(function, input_signature=inputs)
                       for kind, (function, inputs) in damage.items()
                       if kind == model.damage_kind}
        self.browser = browser_graphs.signatures(model)

    def signatures(self):
        return {"serving_default": self.sample, "reconstruct": self.reconstruct,
                "encode": self.encode, "decode": self.decode,
                "log_likelihood": self.log_likelihood, "grow": self.grow, **self.damage,
                **self.browser}

    def _checked_images(self, images):
        return input_checks.images(images, self.model)

    def _checked_latents(self, latents):
        return input_checks.latents(latents, self.model.config.latent_size)

    def _as_images(self, values):
        return tf.cast(tf.round(values), tf.uint8)

    def _sample(self, num_samples, seed):
        num_samples = input_checks.checked(num_samples, [input_checks.count(
            num_samples, "num_samples", input_checks.MAX_BATCH,
            "; ask for more in several calls")])
        samples, means = self.model.sample(num_samples, seed=_seed_pair(seed))
        return {"images": self._as_images(samples), "means": means}

    def _reconstruct(self, images, seed):
        images = self._checked_images(images)
        samples, means = self.model.reconstruct(images, seed=_seed_pair(seed))
        return {"reconstructions": self._as_images(samples), "means": means}

    def _encode(self, images):
        images = self._checked_images(images)
        posterior = self.model.encode(images)
        return {"mean": posterior.mean(), "scale": posterior.stddev()}

    def _decode(self, latents, seed):
        samples, means = self.model.decode_pictures(self._checked_latents(latents),
                                                    seed=_seed_pair(seed))
        return {"means": means, "samples": self._as_images(samples)}

    def _log_likelihood(self, images, k, seed):
        images = self._checked_images(images)
        k = input_checks.checked(k, [input_checks.count(
            k * tf.shape(images)[0], "k x the batch of images", input_checks.MAX_LATENTS,
            "; evaluate fewer images a call"), input_checks.count(k, "k", input_checks.MAX_LATENTS)])
        bounds = self.model.iwae_bounds(images, k, seed=_seed_pair(seed), chunk_size=_CHUNK)
        conventions = self.model.likelihood.conventions
        outputs = {"log_likelihood": bounds[conventions[0]]}
        if len(conventions) > 1:
            outputs.update({f"log_likelihood_{name}": bounds[name] for name in conventions})
        return outputs

    def _grow(self, latents, seed):
        frames = self.model.growth_frames(self._checked_latents(latents), seed=_seed_pair(seed))
        return {"frames": frames}

    def _damage_recovery(self, latents, seed):
        grown, damaged, recovered = self.model.damage_recovery(
            self._checked_latents(latents), seed=_seed_pair(seed))
        return {"grown": grown, "damaged": damaged, "recovered": recovered}

    def _damage_during_growth(self, latents):
        return {"frames": self.model.damage_during_growth(self._checked_latents(latents))}


def export(model, preset: Preset, export_dir: str, version: int = 1,
           training: Optional[dict] = None) -> str:
    """Writes the SavedModel of ``model`` to export_dir/version, with its preset
    and ``training`` record (run_folder.training_record); returns the path."""
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; pick another --version or folder.")
    module = ServingModule(model)
    # Variables in shards of at most 4 MB, so that small models can live in git.
    options = tf.saved_model.SaveOptions(experimental_sharding_callback=(
        tf.train.experimental.MaxShardSizePolicy(max_shard_size=4_000_000)))
    tf.saved_model.save(module, path, signatures=module.signatures(), options=options)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    for asset, record in ((SAVED_MODEL_CONFIG, dataclasses.asdict(preset)),
                          (TRAINING_ASSET, training or {})):
        with open(os.path.join(path, asset), "w") as f:
            json.dump(record, f, indent=2)
    return path


def read_assets(path: str):
    """(preset, training record) of the SavedModel version folder ``path``."""
    config_path = os.path.join(path, SAVED_MODEL_CONFIG)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise FileNotFoundError(
            f"{path} is not a SavedModel folder (no saved_model.pb); pass the "
            "version folder, e.g. exports/mnist/1.")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path} has no {SAVED_MODEL_CONFIG}: it was not exported "
                                "by vnca_tf.export.")
    with open(config_path) as f:
        preset = preset_from_dict(json.load(f))
    training_path = os.path.join(path, TRAINING_ASSET)
    training = {}
    if os.path.isfile(training_path):
        with open(training_path) as f:
            training = json.load(f)
    return preset, training


def restore_model(path: str):
    """(model, preset, training record): the Keras model of the SavedModel
    version folder ``path``, rebuilt from its preset and variables (so that an
    older export gains the signatures of this version)."""
    preset, training = read_assets(path)
    model = build_model(preset.model)
    read_weights(model, os.path.join(path, "variables", "variables"))
    return model, preset, training


class LoadedModel:
    """An exported SavedModel seen through the methods that evaluation and the
    figures use (sample, reconstruct, encode_mean, decode_mean, growth,
    damage_recovery, damage_during_growth, iwae); ``training`` is its record."""

    def __init__(self, path: str):
        self.preset, self.training = read_assets(path)
        self.config = self.preset.model
        self.likelihood = make_likelihood(self.config)
        self.prior = tfp.distributions.Independent(
            tfp.distributions.Normal(tf.zeros(self.config.latent_size), 1.0), 1)
        # Kept, so that the signatures' variables live as long as this object.
        self.saved_model = tf.saved_model.load(path)
        self.signatures = self.saved_model.signatures

    @staticmethod
    def _seed(seed):
        """The signatures' int64 seed from an int s or the pair (s, 0) that the
        signatures make of it (see _seed_pair); other seeds have no equivalent."""
        if isinstance(seed, int):
            return tf.constant(seed, tf.int64)
        if tf.is_tensor(seed) and seed.shape == (2,):
            tf.debugging.assert_equal(
                seed[1], tf.zeros([], seed.dtype),
                message="An exported model takes seeds (s, 0) (or the int s).")
            return tf.cast(seed[0], tf.int64)
        raise TypeError(f"An exported model takes int seeds, got {seed!r}.")

    def sample(self, num_samples, seed=0):
        out = self.signatures["serving_default"](num_samples=tf.constant(num_samples),
                                                 seed=self._seed(seed))
        return tf.cast(out["images"], tf.float32), out["means"]

    def reconstruct(self, images, seed=0):
        out = self.signatures["reconstruct"](images=tf.cast(images, tf.float32),
                                             seed=self._seed(seed))
        return tf.cast(out["reconstructions"], tf.float32), out["means"]

    def encode_mean(self, images):
        return self.signatures["encode"](images=tf.cast(images, tf.float32))["mean"]

    def decode_mean(self, z, seed=0):
        return self.signatures["decode"](latents=z, seed=self._seed(seed))["means"]

    def growth_frames(self, z, seed=0, num_steps=None):
        del num_steps  # The signature grows for the model's full number of steps.
        return self.signatures["grow"](latents=z, seed=self._seed(seed))["frames"]

    def damage_recovery(self, z, seed=0):
        out = self._signature("damage_recovery")(latents=z, seed=self._seed(seed))
        return out["grown"], out["damaged"], out["recovered"]

    def damage_during_growth(self, z):
        return self._signature("damage_during_growth")(latents=z)["frames"]

    @property
    def damage_kind(self):
        """The exported damage signature's name, or None (a baseline)."""
        kinds = [kind for kind in ("damage_recovery", "damage_during_growth")
                 if kind in self.signatures]
        return kinds[0] if kinds else None

    @property
    def growth_columns(self):
        """As the exported model's (VAE.growth_columns): its growth has one frame
        per step, M + 1 per row for a doubling model."""
        if self.damage_kind == "damage_during_growth":
            return self.config.steps_per_stage + 1
        return 8 if self.damage_kind else None

    def _signature(self, name):
        if name not in self.signatures:
            raise ValueError(f"This SavedModel has no {name} signature; it has "
                             f"{', '.join(sorted(self.signatures))}.")
        return self.signatures[name]

    def iwae(self, images, num_samples: int = 128, seed=0, chunk_size: int = _CHUNK):
        """VAE.iwae through the log_likelihood signature."""
        return self.iwae_bounds(images, num_samples, seed, chunk_size)[
            self.likelihood.conventions[0]]

    def iwae_bounds(self, images, num_samples: int = 128, seed=0,
                    chunk_size: int = _CHUNK) -> dict:
        """VAE.iwae_bounds through the log_likelihood signature, which decodes
        ``_CHUNK`` importance samples at a time (another chunk_size is an error,
        not ignored); an export older than the conventions gives its own only."""
        if chunk_size != _CHUNK:
            raise ValueError(f"An exported model decodes {_CHUNK} importance samples at a "
                             f"time; chunk_size={chunk_size} needs a checkpoint "
                             "(--model_dir).")
        out = self.signatures["log_likelihood"](
            images=tf.cast(images, tf.float32), k=tf.constant(num_samples),
            seed=self._seed(seed))
        bounds = {self.likelihood.conventions[0]: out["log_likelihood"]}
        bounds.update({name: out[f"log_likelihood_{name}"] for name in self.likelihood.conventions
                       if f"log_likelihood_{name}" in out})
        return bounds
