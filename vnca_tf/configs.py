"""Configurations: one frozen dataclass per concern, and the named presets.

Each paper experiment has a preset carrying the paper's numbers (Palm et al.,
ICLR 2022, section 3 and appendix A); the ``*_small`` / ``test_*`` presets are
shrunk versions of the same models for CPU runs and the test suite.
"""

import dataclasses
import math
from typing import Dict, Optional, Tuple

ARCHITECTURES = ("vnca", "baseline")
LIKELIHOODS = ("bernoulli", "logistic_mixture")
DECODERS = ("doubling", "non_doubling")
UPDATE_NETS = ("residual", "small")
ENCODER_INPUTS = ("likelihood_scale", "unit_interval")
LIKELIHOOD_CONVENTIONS = ("pixelcnn", "exact")
# Choices of the command lines, defined once (the scripts import only this module
# before parsing their flags, so that --help stays fast).
DATA_SOURCES = ("auto", "local", "tfds")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CHECKPOINTS = ("latest", "best")
INITIAL_SIDE = 2  # The doubling decoder starts from a 2x2 grid of cells.
ENCODER_DOWNSAMPLING = 16  # Four stride-2 convolutions.


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a VNCA (encoder, update network, decoder, likelihood).

    Attributes:
      architecture: "vnca" (an NCA decoder) or "baseline" (the deep
        convolutional VAE of appendix A.6 / A.1: the same encoder, a dense
        layer to a 2x2 grid, stride-2 transposed convolutions halving the
        channels down to encoder_channels, a last 5x5 one to the likelihood).
      image_shape: (height, width, channels) of the images modelled.
      likelihood: "bernoulli" (binary images, logits = channel 0) or
        "logistic_mixture" (8-bit RGB, PixelCNN++ discretized logistics).
      num_mixtures: logistic mixture components (10 cell channels each).
      latent_size: |z|, which is also the cell-state size.
      hidden_size: channels inside the update network.
      update_net: "residual" (3x3 conv, residual blocks, 1x1 conv) or "small"
        (3x3 conv, ELU, [1x1 conv, ELU] x num_hidden_layers, 1x1 conv).
      num_residual_blocks: residual blocks of the "residual" update network.
      num_hidden_layers: extra 1x1 layers of the "small" update network.
      decoder: "doubling" (a 2x2 initial grid, K doublings) or "non_doubling" (z tiled
        over the whole image grid, a random number of steps).
      num_doublings: K, for the doubling decoder.
      steps_per_stage: M, NCA steps before and after each doubling.
      min_steps, max_steps: inclusive range of the non-doubling step count.
      update_probability: the chance that a cell updates at a step (a Bernoulli
        mask per cell and step); 1 updates every cell, as the paper's text says.
      encoder_input: how images enter the encoder: "likelihood_scale" (the
        authors' code: binary images as 0/1, 8-bit RGB as x/127.5 - 1, the
        logistic mixture's [-1, 1]) or "unit_interval" (x / max value).
      likelihood_convention: how the logistic mixture's bins are measured
        (it trains with it, and evaluation reports in it first): "pixelcnn"
        (PixelCNN++'s and the authors' form: edge bins are the CDF's tails, a
        bin whose float32 mass is not above 1e-5 takes the density at its
        centre; the convention of the paper's bits/dim) or "exact" (every bin
        an exact CDF difference).
      posterior_loc_bound, posterior_log_scale_bound: if set, q(z|x)'s mean is
        clamped to [-bound, bound] and its log sigma likewise (the authors'
        beta = 100 run: 100 and 7); None leaves them free.
      encoder_channels: channels of the encoder's first convolution (doubled
        by each of the four stride-2 convolutions that follow).
      baseline_channels: channels of the baseline decoder's 2x2 grid.
      baseline_dense_elu: an ELU after the baseline's dense layer (A.1 has one,
        A.6 not).
    """

    architecture: str = "vnca"
    image_shape: Tuple[int, int, int] = (32, 32, 1)
    likelihood: str = "bernoulli"
    num_mixtures: int = 1
    latent_size: int = 256
    hidden_size: int = 256
    update_net: str = "residual"
    num_residual_blocks: int = 4
    num_hidden_layers: int = 0
    decoder: str = "doubling"
    num_doublings: int = 4
    steps_per_stage: int = 8
    min_steps: int = 32
    max_steps: int = 64
    encoder_channels: int = 32
    baseline_channels: int = 512
    baseline_dense_elu: bool = False
    update_probability: float = 1.0
    encoder_input: str = "likelihood_scale"
    likelihood_convention: str = "pixelcnn"
    posterior_loc_bound: Optional[float] = None
    posterior_log_scale_bound: Optional[float] = None

    def __post_init__(self):
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        _check_choice("likelihood", self.likelihood, LIKELIHOODS)
        _check_choice("decoder", self.decoder, DECODERS)
        _check_choice("update_net", self.update_net, UPDATE_NETS)
        _check_choice("encoder_input", self.encoder_input, ENCODER_INPUTS)
        _check_choice("likelihood_convention", self.likelihood_convention,
                      LIKELIHOOD_CONVENTIONS)
        if not 0.0 < self.update_probability <= 1.0:  # Also false for NaN.
            raise ValueError(f"update_probability must be in (0, 1], got "
                             f"{self.update_probability}.")
        for name in ("posterior_loc_bound", "posterior_log_scale_bound"):
            bound = getattr(self, name)
            if bound is not None and not bound > 0:
                raise ValueError(f"{name} must be > 0 or None (no clamp), got {bound}.")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(
                f"image_shape must be (height, width, channels) of positive "
                f"sizes, got {self.image_shape}.")
        expected_channels = 1 if self.likelihood == "bernoulli" else 3
        if self.image_shape[2] != expected_channels:
            raise ValueError(
                f"The {self.likelihood} likelihood models images with "
                f"{expected_channels} channel(s), but image_shape is "
                f"{self.image_shape}.")
        if self.latent_size < self.likelihood_channels:
            raise ValueError(
                f"latent_size ({self.latent_size}) must be at least the "
                f"{self.likelihood_channels} cell channels the {self.likelihood} "
                f"likelihood reads.")
        if self.architecture == "baseline":
            if self.update_probability != 1.0:
                raise ValueError("update_probability is for the steps of an NCA "
                                 "decoder; the convolutional baseline has none.")
            return  # Any size: the baseline grows past it and crops.
        if self.decoder == "doubling":
            side = INITIAL_SIDE * 2 ** self.num_doublings
            if self.image_shape[:2] != (side, side):
                raise ValueError(
                    f"A doubling decoder with num_doublings={self.num_doublings} "
                    f"grows a {side}x{side} image from its 2x2 initial grid, but "
                    f"image_shape is {self.image_shape}; use num_doublings = "
                    f"log2(side / 2) or pad the images.")
        elif not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"Need 1 <= min_steps <= max_steps, got min_steps="
                f"{self.min_steps}, max_steps={self.max_steps}.")

    @property
    def likelihood_channels(self) -> int:
        """Cell channels read by the likelihood."""
        return 1 if self.likelihood == "bernoulli" else 10 * self.num_mixtures

    @property
    def num_dimensions(self) -> int:
        """H * W * C, the dimensions bits per dimension divides by."""
        height, width, channels = self.image_shape
        return height * width * channels


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation (the paper's defaults, section 3) and the training loop's
    cadence: every ``*_every`` is in steps."""

    batch_size: int = 32
    learning_rate: float = 1e-4
    # Steps after which the learning rate falls tenfold (none: constant, as the
    # paper's presets train).
    learning_rate_drops: Tuple[int, ...] = ()
    beta: float = 1.0
    clip_norm: float = 10.0
    num_steps: int = 100_000
    pool_size: int = 0  # 0: no pool; the damage presets use 1024.
    damage_size: int = 0  # Side of the zeroed square in pool damage.
    # Fraction of the pool's half of each batch that is damaged (the authors': half).
    pool_damaged: float = 0.5
    # Weights to start from instead of a random init (a fine-tune): a SavedModel
    # version folder or a training folder; a resumed run reads its checkpoint.
    init_from: str = ""
    seed: int = 0
    log_every: int = 100
    validation_every: int = 1_000
    validation_batches: int = 10
    image_every: int = 5_000
    checkpoint_every: int = 1_000
    # A checkpoint also after this many minutes of training since the last one,
    # so that a slow machine never loses more.
    checkpoint_minutes: float = 10.0
    # Scalars also after this many minutes since the last (and at the first
    # step), so that TensorBoard shows a slow run from its first minutes.
    log_minutes: float = 2.0
    keep_checkpoints: int = 3
    max_nonfinite: int = 10  # Non-finite updates in a row before the run stops.

    def __post_init__(self):
        for name in ("batch_size", "num_steps", "log_every", "validation_every",
                     "validation_batches", "image_every", "checkpoint_every",
                     "keep_checkpoints", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "clip_norm", "checkpoint_minutes", "log_minutes"):
            if not 0 < getattr(self, name) < math.inf:  # Also false for NaN.
                raise ValueError(f"{name} must be a finite number > 0, got "
                                 f"{getattr(self, name)}.")
        drops = self.learning_rate_drops
        if any(not 0 < step < self.num_steps for step in drops) or list(drops) != sorted(
                set(drops)):
            raise ValueError(f"learning_rate_drops must be increasing steps between 0 and "
                             f"num_steps={self.num_steps}, got {drops} (train.py: set "
                             "them with --learning_rate_drops, none with "
                             "--learning_rate_drops=).")
        if not 0 <= self.pool_damaged <= 1:
            raise ValueError(f"pool_damaged must be a fraction in [0, 1], got {self.pool_damaged}.")
        if not 0 <= self.beta < math.inf:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}.")
        if self.pool_size and (self.pool_size < self.batch_size or self.batch_size < 4
                               or self.damage_size < 1):
            raise ValueError(
                f"Pool training needs pool_size >= batch_size >= 4 and damage_size >= 1, "
                f"got pool_size={self.pool_size}, batch_size={self.batch_size}, "
                f"damage_size={self.damage_size}.")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named experiment: which data, which model, how to train it."""

    name: str
    dataset: str
    model: ModelConfig
    train: TrainConfig
    description: str = ""


def _check_choice(field: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {field} {value!r}; choose one of {', '.join(choices)}.")


_MNIST = ModelConfig()  # Binarized MNIST padded to 32x32, K = 4, M = 8.
_CELEB_A = ModelConfig(image_shape=(64, 64, 3), likelihood="logistic_mixture",
                       num_doublings=5)
# The authors' beta = 100 run: 4 mixtures and q(z|x) clamped.
_CELEB_A_BETA100 = dataclasses.replace(_CELEB_A, num_mixtures=4, posterior_loc_bound=100.0,
                                       posterior_log_scale_bound=7.0)
# Non-doubling MNIST as the paper's text describes it (every cell updates) ...
_MNIST_DAMAGE_TEXT = ModelConfig(
    image_shape=(28, 28, 1), latent_size=128, hidden_size=128, update_net="small",
    decoder="non_doubling", min_steps=32, max_steps=64)
# ... and as the authors' code behind -90.97 nats ran it (half the cells a step).
_MNIST_DAMAGE = dataclasses.replace(_MNIST_DAMAGE_TEXT, update_probability=0.5)
_CELEB_A_DAMAGE_TEXT = ModelConfig(
    image_shape=(62, 62, 3), likelihood="logistic_mixture", latent_size=128,
    hidden_size=128, update_net="small", num_hidden_layers=2,
    decoder="non_doubling", min_steps=64, max_steps=128)
# The authors' run behind 5.03 bits/dim (a17aafd): 32x32, z = 256, a residual
# update net, and the encoder fed ToTensor's [0, 1] as it is.
_CELEB_A_DAMAGE = ModelConfig(
    image_shape=(32, 32, 3), likelihood="logistic_mixture", latent_size=256,
    hidden_size=128, update_net="residual", num_residual_blocks=4,
    decoder="non_doubling", min_steps=64, max_steps=128, encoder_input="unit_interval")
_MNIST_BASELINE = ModelConfig(architecture="baseline", image_shape=(28, 28, 1),
                              latent_size=128)
_CELEB_A_BASELINE = ModelConfig(architecture="baseline", image_shape=(64, 64, 3),
                                likelihood="logistic_mixture", baseline_channels=1024,
                                baseline_dense_elu=True)
_TINY = dict(latent_size=16, hidden_size=16, encoder_channels=4)
_AUTHORS_CLIP = 1.0  # The clip norm of the authors' non-doubling and beta = 100 code.
# The shipped non-doubling VNCAs, small enough to train on a 2-core CPU: as the
# paper's text (every cell updates) and as the authors' code (half of them).
_MNIST_DAMAGE_CPU = dataclasses.replace(_MNIST_DAMAGE_TEXT, latent_size=64, hidden_size=64,
                                        min_steps=16, max_steps=32, encoder_channels=16)
_MNIST_HEAL_CPU = dataclasses.replace(_MNIST_DAMAGE_CPU,
                                      update_probability=_MNIST_DAMAGE.update_probability)
# How the shipped non-doubling CPU models train (each preset changes a few fields).
_CPU_DAMAGE_TRAIN = TrainConfig(batch_size=16, learning_rate=3e-4, num_steps=5_000,
                                pool_size=256, damage_size=14, validation_every=500,
                                image_every=1_000, checkpoint_every=250)
# How they fine-tune to regrow: gently, clip 1.0, every pooled image damaged.
_CPU_REGROW_TRAIN = dataclasses.replace(_CPU_DAMAGE_TRAIN, learning_rate=1e-4,
                                        clip_norm=_AUTHORS_CLIP, pool_damaged=1.0)


def _presets(*presets: Preset) -> Dict[str, Preset]:
    return {preset.name: preset for preset in presets}


PRESETS: Dict[str, Preset] = _presets(
    Preset("mnist", "binarized_mnist", _MNIST, TrainConfig(),
           "Doubling VNCA on statically binarized MNIST padded to 32x32 "
           "(paper: -84.23 nats)."),
    Preset("celeb_a", "celeb_a", _CELEB_A, TrainConfig(),
           "Doubling VNCA on CelebA 64x64, 1-component logistic mixture "
           "(paper: 4.42 bits/dim)."),
    Preset("celeb_a_beta100", "celeb_a", _CELEB_A_BETA100,
           TrainConfig(beta=100.0, clip_norm=_AUTHORS_CLIP),
           "As celeb_a with beta = 100 on the KL, as the authors' code ran it: "
           "4 mixtures, clip 1.0, q(z|x) clamped (paper: 5.40 bits/dim)."),
    Preset("noto_emoji", "noto_emoji", _CELEB_A, TrainConfig(),
           "Doubling VNCA on Noto Emoji 64x64 (paper: 3.09 bits/dim)."),
    Preset("mnist_damage", "binarized_mnist", _MNIST_DAMAGE,
           TrainConfig(batch_size=128, pool_size=1024, damage_size=14,
                       clip_norm=_AUTHORS_CLIP),
           "Non-doubling VNCA on 28x28 binarized MNIST with pool and damage "
           "training, as the authors' code ran it: each cell updates with "
           "probability 0.5 per step, clip 1.0 (paper: -90.97 nats)."),
    Preset("mnist_damage_text", "binarized_mnist", _MNIST_DAMAGE_TEXT,
           TrainConfig(batch_size=128, pool_size=1024, damage_size=14),
           "mnist_damage as the paper's text describes it: every cell updates, "
           "clip 10."),
    Preset("celeb_a_damage", "celeb_a", _CELEB_A_DAMAGE,
           TrainConfig(pool_size=1024, damage_size=16, clip_norm=_AUTHORS_CLIP),
           "Non-doubling VNCA on CelebA with pool and damage training, as the "
           "authors' code ran it: 32x32, z = 256, a residual update net (hidden "
           "128), the encoder fed [0, 1], 16x16 damage, clip 1.0 (paper: 5.03 "
           "bits/dim)."),
    Preset("celeb_a_damage_text", "celeb_a", _CELEB_A_DAMAGE_TEXT,
           TrainConfig(pool_size=1024, damage_size=31),
           "celeb_a_damage as the paper's text describes it: 62x62, z = 128, the "
           "small update net, 31x31 damage (batch size not stated, the default 32)."),
    Preset("mnist_baseline", "binarized_mnist", _MNIST_BASELINE, TrainConfig(),
           "The deep convolutional VAE baseline of appendix A.6 on 28x28 binarized "
           "MNIST (9.5M parameters)."),
    Preset("celeb_a_baseline", "celeb_a", _CELEB_A_BASELINE, TrainConfig(beta=100.0),
           "The deep convolutional VAE baseline of appendix A.1 on CelebA 64x64, "
           "beta = 100 as in the paper."),
    Preset("mnist_cpu", "binarized_mnist",
           dataclasses.replace(_MNIST, latent_size=128, hidden_size=128,
                               num_residual_blocks=2, encoder_channels=16),
           TrainConfig(batch_size=16, learning_rate=3e-4, num_steps=2_500,
                       validation_every=500, image_every=1_000, checkpoint_every=250),
           "The shipped doubling VNCA (saved_models/mnist_cpu): the mnist preset "
           "at half width, trained on a 2-core CPU (69 min)."),
    Preset("mnist_damage_cpu", "binarized_mnist", _MNIST_DAMAGE_CPU, _CPU_DAMAGE_TRAIN,
           "The shipped non-doubling damage-recovery VNCA "
           "(saved_models/mnist_damage_cpu), trained on a 2-core CPU (49 min)."),
    Preset("mnist_heal_cpu", "binarized_mnist", _MNIST_HEAL_CPU,
           dataclasses.replace(_CPU_DAMAGE_TRAIN, num_steps=16_000,
                               learning_rate_drops=(12_000,), clip_norm=_AUTHORS_CLIP),
           "mnist_damage_cpu trained as the authors' code trains mnist_damage (each "
           "cell updates with probability 0.5 per step, clip 1.0), longer, and with "
           "the learning rate cut tenfold for the last 4,000 steps, for a 2-core CPU: "
           "the start of mnist_regrow_cpu."),
    Preset("mnist_regrow_cpu", "binarized_mnist", _MNIST_HEAL_CPU,
           dataclasses.replace(_CPU_REGROW_TRAIN, num_steps=8_000, learning_rate_drops=(5_000,),
                               init_from="saved_models/mnist_heal_cpu/1"),
           "mnist_heal_cpu fine-tuned to regrow, from the shipped model's weights, "
           "with every pooled image damaged (the authors' code damages half of "
           "them): the start of mnist_regrow_long_cpu."),
    Preset("mnist_regrow_long_cpu", "binarized_mnist",
           dataclasses.replace(_MNIST_HEAL_CPU, min_steps=32, max_steps=64),
           dataclasses.replace(_CPU_REGROW_TRAIN, num_steps=1_500,
                               init_from="saved_models/mnist_regrow_cpu/1"),
           "The browser demo's model: mnist_regrow_cpu fine-tuned to grow for 32 to 64 "
           "steps, the authors' mnist_damage range, twice mnist_regrow_cpu's."),
    Preset("test_mnist", "binarized_mnist",
           dataclasses.replace(_MNIST, num_residual_blocks=1, steps_per_stage=2,
                               **_TINY),
           TrainConfig(batch_size=8, num_steps=20),
           "A tiny doubling VNCA for tests."),
    Preset("test_mnist_damage", "binarized_mnist",
           dataclasses.replace(_MNIST_DAMAGE, min_steps=3, max_steps=5, **_TINY),
           TrainConfig(batch_size=8, num_steps=20, pool_size=16, damage_size=14),
           "A tiny non-doubling VNCA (stochastic updates) for tests."),
    Preset("test_mnist_baseline", "binarized_mnist",
           dataclasses.replace(_MNIST_BASELINE, latent_size=16, encoder_channels=4,
                               baseline_channels=64),
           TrainConfig(batch_size=8, num_steps=20),
           "A tiny convolutional baseline for tests."),
    Preset("test_celeb_a", "celeb_a",
           dataclasses.replace(_CELEB_A, image_shape=(16, 16, 3), num_doublings=3,
                               num_residual_blocks=1, steps_per_stage=2, **_TINY),
           TrainConfig(batch_size=8, num_steps=20),
           "A tiny doubling VNCA on 16x16 RGB for tests."),
)

# What `train.py --dataset=NAME --model=KIND` trains: the preset behind the
# paper's number for that dataset and kind of model.
MODEL_KINDS = ("vnca", "damage", "baseline")
DATASET_PRESETS: Dict[Tuple[str, str], str] = {
    ("binarized_mnist", "vnca"): "mnist", ("mnist", "vnca"): "mnist",
    ("celeb_a", "vnca"): "celeb_a", ("noto_emoji", "vnca"): "noto_emoji",
    ("binarized_mnist", "damage"): "mnist_damage", ("mnist", "damage"): "mnist_damage",
    ("celeb_a", "damage"): "celeb_a_damage",
    ("binarized_mnist", "baseline"): "mnist_baseline",
    ("mnist", "baseline"): "mnist_baseline", ("celeb_a", "baseline"): "celeb_a_baseline",
}


def preset_for(dataset: str, model: str = "vnca") -> Preset:
    """The paper's preset for a dataset and kind of model ("vnca": doubling,
    "damage": non-doubling with damage training, "baseline": convolutional).

    Raises:
      ValueError: for a pair the paper has no experiment for; the message
        lists those it has.
    """
    name = DATASET_PRESETS.get((dataset, model))
    if name is None:
        known = ", ".join(f"{d} --model={m}" for d, m in DATASET_PRESETS)
        raise ValueError(f"The paper has no {model} experiment on {dataset!r}. "
                         f"Known: {known} (or pick any --preset).")
    return PRESETS[name]


def small_preset_for(model: ModelConfig) -> str:
    """The shipped preset made for a CPU that is closest to ``model``'s kind."""
    if model.architecture == "baseline":
        return "mnist_baseline"
    return "mnist_cpu" if model.decoder == "doubling" else "mnist_damage_cpu"


def get_preset(name: str) -> Preset:
    """Returns the preset called ``name``.

    Raises:
      ValueError: for an unknown name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}."
        ) from None


# TrainConfig fields under their earlier names, in configs saved before the
# rename (the shipped models' among them).
_EARLIER_NAMES = {"eval_every": "validation_every", "eval_batches": "validation_batches"}
# The bins a logistic-mixture model saved before the field existed trained with.
_EARLIER_CONVENTION = "exact"


def preset_from_dict(saved: dict) -> Preset:
    """The Preset that training saved as config.json (or an export as its asset)."""
    model = dict(saved["model"])
    model["image_shape"] = tuple(model["image_shape"])
    if model.get("likelihood") == "logistic_mixture":
        model.setdefault("likelihood_convention", _EARLIER_CONVENTION)
    train = {_EARLIER_NAMES.get(name, name): value for name, value in saved["train"].items()}
    train["learning_rate_drops"] = tuple(train.get("learning_rate_drops", ()))
    return Preset(saved["name"], saved["dataset"], ModelConfig(**model),
                  TrainConfig(**train), saved.get("description", ""))
