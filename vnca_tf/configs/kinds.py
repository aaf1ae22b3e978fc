"""What a kind of model is, read from its config alone (no TensorFlow).

``kind_of(config)`` is the one place that reads ``ModelConfig.architecture``
and ``decoder``. Everything else asks the kind: the config's cross-field rules,
the figures and signatures a model has (its damage figure, the frames per row
of its growth), the browser graphs and the growth schedule the demo page runs,
the run's description, and the preset made for a CPU. A model (VNCA,
ConvBaseline) and an exported one (serving.loaded.LoadedModel) answer from the
same kind, so that each of these facts lives once.
"""

from typing import Optional, Tuple

INITIAL_SIDE = 2  # The doubling decoder starts from a 2x2 grid of cells.
BROWSER_GRAPHS = ("encode", "initial_cells", "step", "double", "picture")


class ModelKind:
    """The facts of one kind of model, for the ``config`` given."""

    title = ""
    damage_kind: Optional[str] = None  # Its damage figure and signature, if any.
    small_preset = ""  # A shipped preset of this kind, made for a CPU.
    # Fields added after configs of this kind were first saved, with the value
    # those configs trained with (configs/saved.py fills them in).
    earlier_defaults: dict = {}

    def __init__(self, config):
        self.config = config

    def check(self) -> None:
        """Raises ValueError for fields that do not fit this kind."""

    @property
    def growth_columns(self) -> Optional[int]:
        """Frames per row of a growth picture; None for a model that does not grow."""
        return None

    @property
    def browser_graphs(self) -> Tuple[str, ...]:
        """The graphs the browser demo runs (serving.browser_graphs); none for a
        model the demo cannot show."""
        return ()

    def schedule(self) -> dict:
        """How the demo page grows the model, step by step."""
        return {}

    def describe(self) -> str:
        """The model in a few words, e.g. "doubling VNCA, K = 4, M = 8"."""
        return self.title

    def plain_words(self) -> str:
        """What the model does, in one sentence without jargon (the demo's)."""
        return self.title


class _VNCA(ModelKind):
    """An NCA decoder: it grows, and the demo can show it (binary images)."""

    @property
    def browser_graphs(self) -> Tuple[str, ...]:
        if self.config.likelihood != "bernoulli":  # The mixture's mean is sampled.
            return ()
        return tuple(name for name in BROWSER_GRAPHS if name != "double" or self.doubles)

    doubles = False


class DoublingVNCA(_VNCA):
    """The paper's VNCA: a 2x2 grid, K doublings, M steps a stage."""

    title = "doubling VNCA"
    damage_kind = "damage_during_growth"
    small_preset = "mnist_cpu"
    doubles = True

    def check(self) -> None:
        config = self.config
        side = INITIAL_SIDE * 2**config.num_doublings
        if config.image_shape[:2] != (side, side):
            raise ValueError(
                f"A doubling decoder with num_doublings={config.num_doublings} grows a "
                f"{side}x{side} image from its 2x2 initial grid, but image_shape is "
                f"{config.image_shape}; use num_doublings = log2(side / 2) or pad the images."
            )

    @property
    def growth_columns(self) -> int:
        """A stage and its doubling (M + 1) per row."""
        return self.config.steps_per_stage + 1

    def schedule(self) -> dict:
        """Steps per stage and the steps after which the grid divides."""
        steps = self.config.steps_per_stage
        return {
            "doubles_after": [steps * stage for stage in range(1, self.config.num_doublings + 1)],
            "stages": [INITIAL_SIDE * 2**stage for stage in range(self.config.num_doublings + 1)],
            "steps": steps * (self.config.num_doublings + 1),
        }

    def describe(self) -> str:
        return f"{self.title}, K = {self.config.num_doublings}, M = {self.config.steps_per_stage}"

    def plain_words(self) -> str:
        side = self.config.image_shape[0]
        return (
            f"Grows a {side}x{side} image from a 2x2 grid of cells: every "
            f"{self.config.steps_per_stage} steps each cell divides into four."
        )


class NonDoublingVNCA(_VNCA):
    """The damage-recovery VNCA: z over the whole grid, a random step count."""

    title = "non-doubling VNCA"
    damage_kind = "damage_recovery"
    small_preset = "mnist_damage_cpu"

    def check(self) -> None:
        if not 1 <= self.config.min_steps <= self.config.max_steps:
            raise ValueError(
                f"Need 1 <= min_steps <= max_steps, got min_steps="
                f"{self.config.min_steps}, max_steps={self.config.max_steps}."
            )

    @property
    def growth_columns(self) -> int:
        return 8

    def schedule(self) -> dict:
        return {
            "doubles_after": [],
            "stages": [self.config.image_shape[0]],
            "steps": self.config.max_steps,
        }

    def describe(self) -> str:
        return f"{self.title}, {self.config.min_steps}-{self.config.max_steps} steps"

    def plain_words(self) -> str:
        height, width, _ = self.config.image_shape
        return (
            f"Every cell of a {height}x{width} grid starts from the same code and updates "
            f"itself from its neighbours for {self.config.min_steps} to "
            f"{self.config.max_steps} steps, until the image settles."
        )


class ConvolutionalBaseline(ModelKind):
    """The deep convolutional VAE of appendix A.6 / A.1: no NCA, no growth."""

    title = "convolutional baseline"
    earlier_defaults = {"baseline_upsampling": "keras_same"}

    def plain_words(self) -> str:
        return "Draws the whole image at once with a convolutional network: no cells, no growth."

    def check(self) -> None:
        if self.config.update_probability != 1.0:
            raise ValueError(
                "update_probability is for the steps of an NCA decoder; the "
                "convolutional baseline has none."
            )


def kind_of(config) -> ModelKind:
    """The kind of model ``config`` describes."""
    if config.architecture == "baseline":
        return ConvolutionalBaseline(config)
    if config.decoder == "doubling":
        return DoublingVNCA(config)
    return NonDoublingVNCA(config)
