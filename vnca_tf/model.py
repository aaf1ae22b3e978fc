"""The VNCA: a VAE whose decoder is a neural cellular automaton."""

import keras
import tensorflow as tf

from vnca_tf.baselines import ConvBaseline
from vnca_tf.configs import PRECISIONS, ModelConfig
from vnca_tf.layers import UpdateNet
from vnca_tf.nca import DoublingNCA, NonDoublingNCA, damage_right_half, damage_square
from vnca_tf.vae import VAE, as_seed, split_seed


class VNCA(VAE):
    """The encoder of appendix A.5 and an NCA decoder (doubling or not)."""

    def __init__(self, config: ModelConfig, recompute: bool = False, **kwargs):
        super().__init__(config, **kwargs)
        self.update_net = UpdateNet(
            config.latent_size, config.hidden_size, config.update_net,
            num_residual_blocks=config.num_residual_blocks,
            num_hidden_layers=config.num_hidden_layers, name="update_net")
        if config.decoder == "doubling":
            self.decoder = DoublingNCA(self.update_net, config.num_doublings,
                                       config.steps_per_stage, config.update_probability,
                                       recompute, name="decoder")
        else:
            self.decoder = NonDoublingNCA(self.update_net, config.image_shape[:2],
                                          config.min_steps, config.max_steps,
                                          config.update_probability, recompute,
                                          name="decoder")
        self.decoder.build((None, None, None, config.latent_size))
        self.built = True

    def draw_num_steps(self, seed):
        """Non-doubling: a step count uniform on [min_steps, max_steps] from
        ``seed``; doubling: None (always K + 1 stages of M steps)."""
        if self.config.decoder == "doubling":
            return None
        return self.decoder.draw_num_steps(as_seed(seed))

    @property
    def pool_cell_shape(self):
        """Non-doubling: (H, W, latent_size), the grid it can keep running; doubling: None."""
        if self.config.decoder == "doubling":
            return None
        return (*self.decoder.grid_shape, self.config.latent_size)

    def grow(self, cells, seed=None, num_steps=None, return_trajectory=False, rows=None):
        """Runs the NCA from given cells (initial, pooled or damaged ones).

        For the non-doubling decoder the step count is ``num_steps`` or drawn
        from ``seed``; the update masks (update_probability < 1) come from
        ``seed`` too, for the images at ``rows`` of their batch (see
        nca.update_masks). Returns final cells, and the trajectory on request.
        """
        seed = as_seed(seed)
        masks = _mask_arguments(seed, rows)
        if self.config.decoder == "doubling":
            return self.decoder(cells, return_trajectory=return_trajectory, **masks)
        if num_steps is None:
            num_steps = self.draw_num_steps(seed)
        return self.decoder(cells, num_steps=num_steps, return_trajectory=return_trajectory,
                            **masks)

    def decode_cells(self, z, seed=None, num_steps=None, rows=None, start_cells=None,
                     use_start=None):
        """The cells grown from latents z (B, latent_size), or, where
        ``use_start`` is true, from ``start_cells`` (without their gradient)."""
        cells = self.decoder.initial_cells(z)
        if start_cells is not None:
            cells = tf.where(use_start[:, None, None, None], tf.stop_gradient(start_cells),
                             cells)
        return self.grow(cells, seed, num_steps, rows=rows)

    @property
    def damage_kind(self):
        """Non-doubling: "damage_recovery" (Fig. 9/10); doubling:
        "damage_during_growth" (Fig. 11)."""
        return "damage_during_growth" if self.config.decoder == "doubling" else "damage_recovery"

    @property
    def growth_columns(self) -> int:
        """Frames per row of a growth picture: a stage and its doubling (M + 1),
        or 8 steps for the non-doubling decoder."""
        return self.config.steps_per_stage + 1 if self.config.decoder == "doubling" else 8

    def growth_frames(self, z, seed=None, num_steps=None):
        """Mean images of every stage of growth, (T, B, H, W, C), for latents z.

        Doubling: the initial grid, every step and every doubling; non-doubling: it
        and every step (``num_steps`` of them, default max_steps).
        """
        if num_steps is None and self.config.decoder != "doubling":
            num_steps = self.config.max_steps
        steps_seed, picture_seed = split_seed(seed, 2)
        _, trajectory = self.grow(self.decoder.initial_cells(z), steps_seed, num_steps,
                                  return_trajectory=True)
        return self.mean_image_of(trajectory, picture_seed)

    def damage_recovery(self, z, seed=None, num_steps=None, damage_size=None):
        """Mean images of grown samples, the same right after a square of
        ``damage_size`` cells (default: half the width) is zeroed at a random
        place, and after ``num_steps`` more steps (default: max_steps). For the
        non-doubling decoder (the paper's Fig. 9/10)."""
        if self.config.decoder != "non_doubling":
            raise ValueError("Damage recovery runs the non-doubling decoder past its "
                             "growth; this model doubles. Use a *_damage preset.")
        grow_seed, damage_seed, picture_seed, recover_seed = split_seed(seed, 4)
        num_steps = num_steps or self.config.max_steps
        grown = self.grow(self.decoder.initial_cells(z), grow_seed, num_steps)
        damaged = damage_square(grown, damage_size or self.config.image_shape[1] // 2,
                                damage_seed)
        recovered = self.grow(damaged, recover_seed, num_steps)
        return tuple(self.mean_image_of(cells, picture_seed)
                     for cells in (grown, damaged, recovered))

    def final_cells_damaged_at(self, z, stage: int, seed=None):
        """Final cells when the right half of the cells is zeroed at the start
        of ``stage`` (0: the initial grid; s >= 1: after stage s-1's steps, just
        before doubling s): the paper's damage during growth (Fig. 11).
        ``seed``: the update masks' (the same as undamaged growth with it)."""
        if self.config.decoder != "doubling":
            raise ValueError("Damage during growth is defined for the doubling VNCA.")
        masks = _mask_arguments(as_seed(seed))
        cells = self.decoder.initial_cells(z)
        if stage:
            # Damage before or after the doubling is the same: children copy parents.
            cells = self.decoder.doubling(self.decoder(cells, last_stage=stage - 1, **masks))
        return self.decoder(damage_right_half(cells), **masks)

    def damage_during_growth(self, z):
        """Mean images of z grown with the right half zeroed at each stage
        0..num_doublings, stacked to (num_doublings + 1, B, H, W, C) (Fig. 11)."""
        return tf.stack([self.mean_image_of(self.final_cells_damaged_at(z, s))
                         for s in range(self.config.num_doublings + 1)])


def _mask_arguments(seed, rows=None) -> dict:
    """The decoder's update-mask arguments (see nca.update_masks) for a grow
    seed: the masks' own seed is derived from it, apart from the step count's."""
    return dict(seed=tf.random.experimental.stateless_fold_in(seed, 1), rows=rows)


def build_model(config: ModelConfig, precision: str = "float32",
                recompute: bool = False) -> VAE:
    """The model a config describes: a VNCA or a convolutional baseline.

    ``precision``: the Keras dtype policy of the layers' computation;
    "mixed_bfloat16" computes convolutions in bfloat16 (fast on GPUs and on
    CPUs with bfloat16 units) while weights, cell states, the likelihood, the
    KL and the loss stay float32; "mixed_float16" likewise in float16 (train
    it with loss scaling: the Trainer does). ``recompute`` (VNCAs): recompute each
    NCA step in the backward pass instead of storing its activations.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of "
                         f"{', '.join(PRECISIONS)}.")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        if config.architecture == "baseline":
            if recompute:
                raise ValueError("recompute is for the steps of a VNCA's decoder; the "
                                 "convolutional baseline has none. Leave it off.")
            return ConvBaseline(config)
        return VNCA(config, recompute)
    finally:
        keras.config.set_dtype_policy(previous)
