"""The configuration schema: one frozen, validated dataclass per concern.

ModelConfig (the model), TrainConfig (what a run optimises and how often it
reports), RunConfig (how a run executes: devices, numerics, the data's
source), and a Preset naming a dataset, a model and its training. Every field
is checked when the object is made, so a bad value is one ValueError that
names it, wherever it came from (a preset, a flag, a config.json).
"""

import dataclasses
import math
from typing import Optional, Tuple

from vnca_tf.configs.kinds import kind_of

ARCHITECTURES = ("vnca", "baseline")
LIKELIHOODS = ("bernoulli", "logistic_mixture")
DECODERS = ("doubling", "non_doubling")
UPDATE_NETS = ("residual", "small")
ENCODER_INPUTS = ("likelihood_scale", "unit_interval")
LIKELIHOOD_CONVENTIONS = ("pixelcnn", "exact")
BASELINE_UPSAMPLINGS = ("pytorch", "keras_same")
# Choices of the command lines, defined once (the scripts import only the
# configs before parsing their flags, so that --help stays fast).
DATA_SOURCES = ("auto", "local", "tfds")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = ("auto", "on", "off")
CHECKPOINTS = ("latest", "best")
# The ModelConfig fields a trained model's weights keep their meaning under:
# how long and how often its NCA runs, and the convention its likelihood is
# measured in. Loading with changes (vnca_tf.load, evaluate.py and export.py's
# --config.model.*) and a fine-tune (init_from) accept changes to these alone;
# any other field makes another model.
WEIGHT_KEEPING_FIELDS = (
    "min_steps",
    "max_steps",
    "steps_per_stage",
    "update_probability",
    "likelihood_convention",
)
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
      baseline_upsampling: which outputs of the baseline's stride-2
        up-convolutions are kept: "pytorch" (the authors' ConvTranspose2d with
        padding=2, output_padding=1: [2, 2n + 2) of the full 2n + 3) or
        "keras_same" (Keras' padding="same": [1, 2n + 1), one pixel off; the
        layout of baselines saved before this field, which they read back as).
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
    baseline_upsampling: str = "pytorch"
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
        _check_choice("likelihood_convention", self.likelihood_convention, LIKELIHOOD_CONVENTIONS)
        _check_choice("baseline_upsampling", self.baseline_upsampling, BASELINE_UPSAMPLINGS)
        _check_at_least(
            self,
            1,
            ("num_mixtures", "latent_size", "hidden_size", "encoder_channels", "baseline_channels"),
        )
        _check_at_least(self, 0, ("num_residual_blocks", "num_hidden_layers", "num_doublings"))
        if not 0.0 < self.update_probability <= 1.0:  # Also false for NaN.
            raise ValueError(
                f"update_probability must be in (0, 1], got {self.update_probability}."
            )
        for name in ("posterior_loc_bound", "posterior_log_scale_bound"):
            bound = getattr(self, name)
            if bound is not None and not bound > 0:
                raise ValueError(f"{name} must be > 0 or None (no clamp), got {bound}.")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(
                f"image_shape must be (height, width, channels) of positive "
                f"sizes, got {self.image_shape}."
            )
        expected_channels = 1 if self.likelihood == "bernoulli" else 3
        if self.image_shape[2] != expected_channels:
            raise ValueError(
                f"The {self.likelihood} likelihood models images with "
                f"{expected_channels} channel(s), but image_shape is "
                f"{self.image_shape}."
            )
        if self.latent_size < self.likelihood_channels:
            raise ValueError(
                f"latent_size ({self.latent_size}) must be at least the "
                f"{self.likelihood_channels} cell channels the {self.likelihood} "
                f"likelihood reads."
            )
        kind_of(self).check()  # The rules of its kind (doubling sizes, step range).

    @property
    def likelihood_channels(self) -> int:
        """Cell channels read by the likelihood."""
        return 1 if self.likelihood == "bernoulli" else 10 * self.num_mixtures


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
    # The split trained on ("" : the dataset's, as the paper trained: binarized
    # MNIST's train+validation). Validation reads the dataset's validation
    # split only where training does not (e.g. train_split="train").
    train_split: str = ""
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
        _check_at_least(
            self,
            1,
            (
                "batch_size",
                "num_steps",
                "log_every",
                "validation_every",
                "validation_batches",
                "image_every",
                "checkpoint_every",
                "keep_checkpoints",
                "max_nonfinite",
            ),
        )
        for name in ("learning_rate", "clip_norm", "checkpoint_minutes", "log_minutes"):
            if not 0 < getattr(self, name) < math.inf:  # Also false for NaN.
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}.")
        drops = self.learning_rate_drops
        if any(not 0 < step < self.num_steps for step in drops) or list(drops) != sorted(
            set(drops)
        ):
            raise ValueError(
                f"learning_rate_drops must be increasing steps between 0 and "
                f"num_steps={self.num_steps}, got {drops} (train.py: set "
                "them with --learning_rate_drops, none with "
                "--learning_rate_drops=)."
            )
        if not 0 <= self.pool_damaged <= 1:
            raise ValueError(f"pool_damaged must be a fraction in [0, 1], got {self.pool_damaged}.")
        if not 0 <= self.beta < math.inf:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}.")
        if self.pool_size and (
            self.pool_size < self.batch_size or self.batch_size < 4 or self.damage_size < 1
        ):
            raise ValueError(
                f"Pool training needs pool_size >= batch_size >= 4 and damage_size >= 1, "
                f"got pool_size={self.pool_size}, batch_size={self.batch_size}, "
                f"damage_size={self.damage_size}."
            )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How a run executes, not what it trains (train.py's flags of the same names).

    Attributes:
      strategy: "auto" (from the machine and TF_CONFIG), "default", "mirrored"
        or "multi_worker".
      precision: "float32", "mixed_bfloat16" or "mixed_float16" (with dynamic
        loss scaling).
      jit_compile: "auto" (XLA on GPUs only: its CPU convolutions are far
        slower), "on" or "off".
      recompute: recompute each NCA step in backprop instead of storing its
        activations.
      microbatches: split each replica's batch into this many parts, one after
        the other, and sum their gradients (the same update, less memory).
      data_source, data_dir: where the data come from ("auto", "local" or
        "tfds"; the folder of original files, default $VNCA_DATA_DIR).
      deterministic: TensorFlow's op determinism.
      worker_timeout: seconds a multi-worker run waits for its cluster.
      console_seconds: seconds between progress lines where the console is a
        log file, not a terminal (which is redrawn after every step).
    """

    strategy: str = "auto"
    precision: str = "float32"
    jit_compile: str = "auto"
    recompute: bool = False
    microbatches: int = 1
    data_source: str = "auto"
    data_dir: Optional[str] = None
    deterministic: bool = False
    worker_timeout: float = 600.0
    console_seconds: float = 30.0

    def __post_init__(self):
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("jit_compile", self.jit_compile, JIT_COMPILE)
        _check_choice("data_source", self.data_source, DATA_SOURCES)
        if self.microbatches < 1:
            raise ValueError(f"microbatches must be >= 1, got {self.microbatches}.")
        if not 0 < self.worker_timeout < math.inf:
            raise ValueError(
                f"worker_timeout must be a finite number > 0, got {self.worker_timeout}."
            )
        if not 0 < self.console_seconds < math.inf:
            raise ValueError(
                f"console_seconds must be a finite number > 0, got {self.console_seconds}."
            )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named experiment: which data, which model, how to train it."""

    name: str
    dataset: str
    model: ModelConfig
    train: TrainConfig
    description: str = ""

    @property
    def num_dimensions(self) -> int:
        """The dimensions bits/dim divides by: the dataset's own (see
        ``data_dimensions``)."""
        return data_dimensions(self.dataset, self.model.image_shape)


# Datasets whose images a model may grow padded: their own shape.
NATIVE_SHAPES = {"binarized_mnist": (28, 28, 1), "mnist": (28, 28, 1)}


def data_dimensions(dataset: str, image_shape) -> int:
    """H * W * C of ``dataset``'s own images, the one denominator of bits/dim:
    784 for MNIST whatever grid a model grows it on (32x32 is zero padding,
    as the authors' loader added), the modelled shape for the others (CelebA
    and Noto Emoji resized to it)."""
    height, width, channels = NATIVE_SHAPES.get(dataset, tuple(image_shape))
    return height * width * channels


def weight_changing_fields(trained: "ModelConfig", other: "ModelConfig") -> Tuple[str, ...]:
    """ "field (A there, B here)" for each field outside WEIGHT_KEEPING_FIELDS in
    which ``other`` differs from the ``trained`` model's config: what the
    trained weights cannot be read into."""
    return tuple(
        f"{field.name} ({getattr(trained, field.name)} there, {getattr(other, field.name)} here)"
        for field in dataclasses.fields(ModelConfig)
        if field.name not in WEIGHT_KEEPING_FIELDS
        and getattr(trained, field.name) != getattr(other, field.name)
    )


def _check_at_least(config, minimum: int, names) -> None:
    """Raises ValueError for the first of the fields ``names`` below ``minimum``."""
    for name in names:
        if getattr(config, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {getattr(config, name)}.")


def _check_choice(field: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {field} {value!r}; choose one of {', '.join(choices)}.")
