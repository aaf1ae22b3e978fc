"""The two NCA decoders (doubling and non-doubling) and the damage operations.

A decoder maps a latent vector to a grid of cell states: ``initial_cells(z)`` lays z out
on the starting grid and ``call`` runs the automaton, z_t = z_{t-1} + m_t u(z_{t-1}),
where m_t is 1 for every cell (``update_probability`` 1, the paper's text) or a
per-cell Bernoulli(update_probability) mask drawn anew at every step (as in
Growing NCA, and in the authors' code behind the non-doubling MNIST number).
The masks come from a stateless seed, step by step, so a run can be repeated
exactly. Steps run in ``tf.while_loop`` so that the decoders trace once and
compile under XLA; with ``return_trajectory=True`` every intermediate grid
(upsampled to the final size) is returned for growth figures.
"""

import math
from typing import Optional

import keras
import tensorflow as tf
from keras import layers

from vnca_tf.configs import INITIAL_SIDE
from vnca_tf.models.layers import Doubling, upsample
from vnca_tf.models.seeds import for_each_seed


def update_masks(probability: float, seed, rows=None):
    """The per-step update masks: a function of (cells, step index) -> a (B, H, W, 1)
    float mask of Bernoulli(``probability``) cells, drawn from the stateless
    ``seed`` folded with the step index; None where every cell updates.

    ``rows`` = (first, total), ints or a shape-[2] int32 tensor: the cells are
    rows [first, first + B) of a batch of ``total`` images, and get the masks that
    batch would get, so a batch split over replicas or micro-batches draws the same
    masks as a whole one. A ``seed`` of shape (B, 2) gives each grid its own
    masks instead, whatever batch it is in (evaluation's importance samples).
    """
    if probability >= 1.0:
        return None
    if seed is None:
        raise ValueError(
            f"An NCA with update_probability {probability} draws its "
            "update masks from a seed; pass one."
        )

    def mask(cells, step):
        if seed.shape.rank == 2:
            shape = [cells.shape[1], cells.shape[2], 1]
            uniform = for_each_seed(
                lambda own: tf.random.stateless_uniform(
                    shape, tf.random.experimental.stateless_fold_in(own, step)
                ),
                seed,
                tf.float32,
            )
            return tf.cast(uniform < probability, cells.dtype)
        batch = tf.shape(cells)[0]
        first, total = tf.unstack(
            tf.convert_to_tensor(rows if rows is not None else (0, batch), tf.int32)
        )
        shape = tf.stack([total, tf.shape(cells)[1], tf.shape(cells)[2], 1])
        uniform = tf.random.stateless_uniform(
            shape, tf.random.experimental.stateless_fold_in(seed, step)
        )
        return tf.cast(uniform[first : first + batch] < probability, cells.dtype)

    return mask


class _NCA(layers.Layer):
    """Shared stepping: runs the update network for a number of steps."""

    def __init__(
        self, update_net, update_probability: float = 1.0, recompute: bool = False, **kwargs
    ):
        # The cell states are float32 whatever the update network computes in.
        super().__init__(dtype="float32", **kwargs)
        self.update_net = update_net
        self.update_probability = update_probability
        self.recompute = recompute

    def get_config(self):
        """Its fields, the update network's (serialized) among them."""
        return {
            **super().get_config(),
            "update_net": keras.saving.serialize_keras_object(self.update_net),
            "update_probability": self.update_probability,
            "recompute": self.recompute,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["update_net"] = keras.saving.deserialize_keras_object(config["update_net"])
        config.pop("dtype", None)  # Always float32 (see __init__).
        return cls(**config)

    def build(self, input_shape):
        if not self.update_net.built:
            self.update_net.build(input_shape)

    def step(self, cells, mask=None):
        """One NCA step, on every cell or on the cells where ``mask`` is 1. The
        cell state stays in its own dtype (float32) when the update network
        computes in a mixed precision."""
        update = tf.cast(self.update_net(cells), cells.dtype)
        return cells + (update if mask is None else update * mask)

    def _recomputed_step(self):
        """``step`` as a function of (cells, *weights) whose gradient recomputes
        the step from its input cells instead of reading stored activations.

        The weights are passed in as tensors (the update network runs through
        Keras' ``stateless_call``), so that the step can sit in a tf.while_loop:
        the loop's gradient then keeps only each step's input cells and sums
        the weight gradients as it goes (a step's activations live only while
        its own gradient is computed).
        """
        update_net = self.update_net

        def stateless_step(cells, mask, weights):
            update, _ = update_net.stateless_call(list(weights), [], cells)
            return cells + tf.cast(update, cells.dtype) * mask

        @tf.custom_gradient
        def step(cells, mask, *weights):
            def gradient(d_cells):
                # Recompute only once the step's output gradient exists: without
                # this (or with parallel iterations) the backward loop recomputes
                # several steps ahead and holds their activations at once.
                with tf.control_dependencies([d_cells]):
                    cells_again = tf.identity(cells)
                with tf.GradientTape() as tape:
                    tape.watch([cells_again, *weights])
                    recomputed = stateless_step(cells_again, mask, weights)
                d_cells, *d_weights = tape.gradient(
                    recomputed, [cells_again, *weights], output_gradients=d_cells
                )
                return (d_cells, None, *d_weights)

            return stateless_step(cells, mask, weights), gradient

        return step

    def _run(
        self,
        cells,
        num_steps,
        max_steps: int,
        masks=None,
        first_step=0,
        frames=None,
        first_frame=0,
        frame_of=None,
    ):
        """Applies ``num_steps`` steps, numbered from ``first_step`` for the update
        ``masks`` (see ``update_masks``; None: every cell updates); with
        ``frames`` (a TensorArray), writes ``frame_of`` the grid after step i at
        ``first_frame + i``. ``num_steps`` may be a (B,)
        tensor (no frames): each grid stops after its own count.

        With ``recompute`` (and no frames) backprop stores only the cells between
        steps and runs each step again (see ``_recomputed_step``).
        """
        counts = num_steps if tf.is_tensor(num_steps) and num_steps.shape.rank == 1 else None
        if counts is not None:
            if frames is not None:
                raise ValueError("A trajectory needs one step count for every grid.")
            num_steps = tf.reduce_max(counts)

        def mask_of(i, cells):
            mask = None if masks is None else masks(cells, first_step + i)
            if counts is not None:  # The grids whose count is reached stop updating.
                running = tf.cast(i < counts, cells.dtype)[:, None, None, None]
                mask = running if mask is None else mask * running
            return mask

        if frames is None:
            if self.recompute:
                step, weights = (
                    self._recomputed_step(),
                    [v.value for v in self.update_net.trainable_variables],
                )

                def body(i, cells):
                    mask = mask_of(i, cells)
                    return i + 1, step(cells, tf.ones([]) if mask is None else mask, *weights)

                parallel = 1
            else:
                body, parallel = (lambda i, c: (i + 1, self.step(c, mask_of(i, c)))), 10
            _, cells = tf.while_loop(
                lambda i, c: i < num_steps,
                body,
                (tf.constant(0), cells),
                maximum_iterations=max_steps,
                parallel_iterations=parallel,
            )
            return cells, None

        def body(i, cells, frames):
            cells = self.step(cells, mask_of(i, cells))
            return i + 1, cells, frames.write(first_frame + i, frame_of(cells))

        _, cells, frames = tf.while_loop(
            lambda i, c, f: i < num_steps,
            body,
            (tf.constant(0), cells, frames),
            maximum_iterations=max_steps,
        )
        return cells, frames


def _frame_maker(channels: Optional[int], factor: int = 1):
    """What a trajectory keeps of a grid: its first ``channels`` (None: all),
    upsampled by ``factor`` to the final size."""
    return lambda cells: upsample(cells if channels is None else cells[..., :channels], factor)


def _new_frames(first_frame, num_frames):
    """A TensorArray of ``num_frames`` grids, holding ``first_frame`` at index 0."""
    frames = tf.TensorArray(first_frame.dtype, size=num_frames, element_shape=first_frame.shape)
    return frames.write(0, first_frame)


@keras.saving.register_keras_serializable("vnca_tf")
class DoublingNCA(_NCA):
    """The VNCA decoder: a 2x2 initial grid, then K+1 stages of M steps with a doubling
    before every stage but the first (MNIST: K = 4 -> 32x32; CelebA: K = 5 -> 64x64).

    ``call(cells)`` starts at the stage whose grid matches ``cells``: a 2x2 grid
    runs every stage, a 2^(s+1) grid (e.g. damaged mid-growth, then doubled) runs
    stages s..K.
    """

    # It always runs K + 1 stages of M steps (its growth too), and grows no
    # cells that pool training could continue from.
    max_growth_steps = None
    pool_cell_shape = None

    def __init__(
        self,
        update_net,
        num_doublings: int,
        steps_per_stage: int,
        update_probability: float = 1.0,
        recompute: bool = False,
        **kwargs,
    ):
        super().__init__(update_net, update_probability, recompute, **kwargs)
        self.num_doublings = num_doublings
        self.steps_per_stage = steps_per_stage
        self.doubling = Doubling(dtype="float32")
        self.output_size = INITIAL_SIDE * 2**num_doublings

    def get_config(self):
        return {
            **super().get_config(),
            "num_doublings": self.num_doublings,
            "steps_per_stage": self.steps_per_stage,
        }

    @classmethod
    def from_model_config(cls, update_net, config, recompute: bool = False, **kwargs):
        """The decoder a ModelConfig describes."""
        return cls(
            update_net,
            config.num_doublings,
            config.steps_per_stage,
            config.update_probability,
            recompute,
            **kwargs,
        )

    def draw_num_steps(self, seed):
        """None: the step count is fixed."""
        del seed

    def initial_cells(self, z):
        """Tiles latents (B, Z) into the 2x2 initial grid (B, 2, 2, Z)."""
        return tf.tile(z[:, None, None, :], [1, INITIAL_SIDE, INITIAL_SIDE, 1])

    def start_stage(self, side: int) -> int:
        """The stage a grid of side ``side`` starts at; errors for other sizes."""
        stage = math.log2(side / INITIAL_SIDE) if side else -1
        if stage != int(stage) or not 0 <= stage <= self.num_doublings:
            sizes = [INITIAL_SIDE * 2**s for s in range(self.num_doublings + 1)]
            raise ValueError(
                f"The doubling NCA grows grids of side {sizes}; got cells of side "
                f"{side}. Pass a square grid of one of those sizes."
            )
        return int(stage)

    def call(
        self,
        cells,
        num_steps=None,
        return_trajectory: bool = False,
        seed=None,
        rows=None,
        last_stage: int = None,
        trajectory_channels: Optional[int] = None,
    ):
        """Grows ``cells`` (B, s, s, Z) to the full (B, 2^(K+1), 2^(K+1), Z) grid,
        or only up to the end of stage ``last_stage`` (before its doubling).
        ``seed`` and ``rows``: the update masks' (see ``update_masks``); stage s's
        steps are numbered from s * M, wherever growth starts; ``num_steps``
        must be None (the stages fix it).

        Returns the final cells, and with ``return_trajectory`` also a tensor
        (T, B, H, W, Z) of the initial grid, every step and every doubling,
        each upsampled to the final size (only its first ``trajectory_channels``
        of Z, if given: what a picture of growth needs).
        """
        if num_steps is not None:
            raise ValueError(
                "The doubling NCA runs K + 1 stages of M steps; num_steps is "
                "for the non-doubling one."
            )
        side = cells.shape[1]
        if side != cells.shape[2]:
            raise ValueError(f"Cell grids must be square, got shape {cells.shape}.")
        stage = self.start_stage(side)
        last_stage = self.num_doublings if last_stage is None else last_stage
        if not stage <= last_stage <= self.num_doublings:
            raise ValueError(
                f"last_stage must be in [{stage}, {self.num_doublings}] for "
                f"cells of side {side}, got {last_stage}."
            )
        factor = self.output_size // side
        masks = update_masks(self.update_probability, seed, rows)
        frames, index = None, 1
        if return_trajectory:
            stages = last_stage + 1 - stage
            num_frames = 1 + stages * self.steps_per_stage + (stages - 1)
            frames = _new_frames(_frame_maker(trajectory_channels, factor)(cells), num_frames)
        for s in range(stage, last_stage + 1):
            if s > stage:
                cells = self.doubling(cells)
                factor //= 2
                if frames is not None:
                    frames = frames.write(index, _frame_maker(trajectory_channels, factor)(cells))
                    index += 1
            cells, frames = self._run(
                cells,
                self.steps_per_stage,
                self.steps_per_stage,
                masks,
                s * self.steps_per_stage,
                frames,
                index,
                _frame_maker(trajectory_channels, factor),
            )
            index += self.steps_per_stage
        if frames is None:
            return cells
        return cells, frames.stack()


@keras.saving.register_keras_serializable("vnca_tf")
class NonDoublingNCA(_NCA):
    """The damage-recovery decoder (section 3.3): z tiled over the whole image
    grid and a number of steps drawn per batch from [min_steps, max_steps]."""

    def __init__(
        self,
        update_net,
        grid_shape,
        min_steps: int,
        max_steps: int,
        update_probability: float = 1.0,
        recompute: bool = False,
        **kwargs,
    ):
        super().__init__(update_net, update_probability, recompute, **kwargs)
        self.grid_shape = tuple(grid_shape)
        self.min_steps = min_steps
        self.max_steps = max_steps

    def get_config(self):
        return {
            **super().get_config(),
            "grid_shape": self.grid_shape,
            "min_steps": self.min_steps,
            "max_steps": self.max_steps,
        }

    @classmethod
    def from_model_config(cls, update_net, config, recompute: bool = False, **kwargs):
        """The decoder a ModelConfig describes."""
        return cls(
            update_net,
            config.image_shape[:2],
            config.min_steps,
            config.max_steps,
            config.update_probability,
            recompute,
            **kwargs,
        )

    @property
    def pool_cell_shape(self):
        """(H, W, Z): the grid that pool training continues from."""
        return (*self.grid_shape, self.update_net.state_size)

    @property
    def max_growth_steps(self) -> int:
        """The steps a growth figure shows: max_steps."""
        return self.max_steps

    def initial_cells(self, z):
        """Tiles latents (B, Z) over the full grid (B, H, W, Z)."""
        height, width = self.grid_shape
        return tf.tile(z[:, None, None, :], [1, height, width, 1])

    def draw_num_steps(self, seed):
        """A step count uniform on [min_steps, max_steps] from a stateless seed;
        from seeds (B, 2), one count for each (B,)."""
        if seed.shape.rank == 2:
            return for_each_seed(self.draw_num_steps, seed, tf.int32)
        return tf.random.stateless_uniform(
            [], seed, self.min_steps, self.max_steps + 1, dtype=tf.int32
        )

    def call(
        self,
        cells,
        num_steps,
        return_trajectory: bool = False,
        seed=None,
        rows=None,
        last_stage=None,
        trajectory_channels: Optional[int] = None,
    ):
        """Runs ``num_steps`` steps (a Python int or a scalar int32 tensor, at most
        ``max_steps``; or a (B,) tensor, a count for each grid) from ``cells``
        (B, H, W, Z); ``seed`` and ``rows``: the update masks' (see
        ``update_masks``).

        Returns the final cells, and with ``return_trajectory`` also the initial
        grid and every step stacked as (num_steps + 1, B, H, W, Z) (only the first
        ``trajectory_channels`` of Z, if given). (``last_stage`` is the doubling
        NCA's; it has no stages.)
        """
        if last_stage is not None:
            raise ValueError(
                "The non-doubling NCA has no stages; last_stage is for the doubling one."
            )
        if tuple(cells.shape[1:3]) != self.grid_shape:
            raise ValueError(
                f"The non-doubling NCA runs on a {self.grid_shape} grid of cells, "
                f"got cells of shape {cells.shape}."
            )
        if isinstance(num_steps, int) and not 0 <= num_steps <= self.max_steps:
            raise ValueError(f"num_steps must be in [0, {self.max_steps}], got {num_steps}.")
        frame_of = _frame_maker(trajectory_channels)
        frames = _new_frames(frame_of(cells), num_steps + 1) if return_trajectory else None
        masks = update_masks(self.update_probability, seed, rows)
        cells, frames = self._run(
            cells, num_steps, self.max_steps, masks, frames=frames, first_frame=1, frame_of=frame_of
        )
        if frames is None:
            return cells
        return cells, frames.stack()


def damage_square(cells, size: int, seed):
    """Zeroes one ``size`` x ``size`` square of cells per image, at a random
    position drawn from the stateless ``seed`` (shape [2])."""
    height, width = cells.shape[1], cells.shape[2]
    if not 0 < size <= min(height, width):
        raise ValueError(
            f"Damage size must be in [1, {min(height, width)}] for a {height}x{width} "
            f"grid, got {size}."
        )
    batch = tf.shape(cells)[0]
    positions = tf.constant([[height - size + 1], [width - size + 1]], tf.float32)
    uniform = tf.random.stateless_uniform([2, batch], seed)
    corners = tf.cast(tf.floor(uniform * positions), tf.int32)
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= corners[0][:, None]) & (rows < corners[0][:, None] + size)
    in_cols = (cols >= corners[1][:, None]) & (cols < corners[1][:, None] + size)
    hit = in_rows[:, :, None] & in_cols[:, None, :]
    return tf.where(hit[..., None], tf.zeros_like(cells), cells)


def damage_right_half(cells):
    """Zeroes the right half of every grid (the paper's damage-during-growth test)."""
    width = cells.shape[2]
    keep = tf.range(width) < width // 2
    return tf.where(keep[None, None, :, None], cells, tf.zeros_like(cells))
