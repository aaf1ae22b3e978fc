"""The VNCA: a VAE whose decoder is a neural cellular automaton."""

import keras
import tensorflow as tf

from vnca_tf.configs import ModelConfig
from vnca_tf.configs.kinds import DoublingVNCA, NonDoublingVNCA
from vnca_tf.models.layers import UpdateNet
from vnca_tf.models.nca import DoublingNCA, NonDoublingNCA, damage_right_half, damage_square
from vnca_tf.models.seeds import as_seed, fold_in_each, split_seed
from vnca_tf.models.vae import VAE


@keras.saving.register_keras_serializable("vnca_tf")
class VNCA(VAE):
    """The encoder of appendix A.5 and an NCA decoder: doubling or not, as the
    config's kind says; the decoder answers for what differs."""

    def __init__(self, config: ModelConfig, recompute: bool = False, **kwargs):
        super().__init__(config, **kwargs)
        if type(self.kind) not in DECODER_CLASSES:
            raise ValueError(
                f"This config is a {self.kind.describe()}, not a VNCA: build it with "
                "vnca_tf.build_model (or ConvBaseline)."
            )
        self.recompute = recompute
        self.update_net = UpdateNet(
            config.latent_size,
            config.hidden_size,
            config.update_net,
            num_residual_blocks=config.num_residual_blocks,
            num_hidden_layers=config.num_hidden_layers,
            name="update_net",
        )
        self.decoder = DECODER_CLASSES[type(self.kind)].from_model_config(
            self.update_net, config, recompute, name="decoder"
        )
        self.decoder.build((None, None, None, config.latent_size))
        self.built = True

    def get_config(self):
        return {**super().get_config(), "recompute": self.recompute}

    def draw_num_steps(self, seed):
        """Non-doubling: a step count uniform on [min_steps, max_steps] from
        ``seed``; doubling: None (always K + 1 stages of M steps)."""
        return self.decoder.draw_num_steps(as_seed(seed))

    @property
    def pool_cell_shape(self):
        """Non-doubling: (H, W, latent_size), the grid it can keep running; doubling: None."""
        return self.decoder.pool_cell_shape

    def grow(
        self,
        cells,
        seed=None,
        num_steps=None,
        return_trajectory=False,
        rows=None,
        trajectory_channels=None,
    ):
        """Runs the NCA from given cells (initial, pooled or damaged ones).

        For the non-doubling decoder the step count is ``num_steps`` or drawn
        from ``seed``; the update masks (update_probability < 1) come from
        ``seed`` too, for the images at ``rows`` of their batch (see
        nca.update_masks). Returns final cells, and the trajectory on request
        (of each grid, its first ``trajectory_channels``, if given).
        """
        seed = as_seed(seed)
        if num_steps is None:
            num_steps = self.draw_num_steps(seed)
        return self.decoder(
            cells,
            num_steps=num_steps,
            return_trajectory=return_trajectory,
            trajectory_channels=trajectory_channels,
            **_mask_arguments(seed, rows),
        )

    def decode_cells(
        self, z, seed=None, num_steps=None, rows=None, start_cells=None, use_start=None
    ):
        """The cells grown from latents z (B, latent_size), or, where
        ``use_start`` is true, from ``start_cells`` (without their gradient)."""
        cells = self.decoder.initial_cells(z)
        if start_cells is not None:
            cells = tf.where(use_start[:, None, None, None], tf.stop_gradient(start_cells), cells)
        return self.grow(cells, seed, num_steps, rows=rows)

    def decode_cells_per_example(self, z, seeds):
        """The cells grown from latents z (N, latent_size), each with its own
        step count (non-doubling) and update masks drawn from its row of
        ``seeds`` (N, 2): the same for a latent in any batch."""
        count = tf.shape(seeds)[:1]
        steps_seeds = fold_in_each(seeds, tf.zeros(count, tf.int32))
        mask_seeds = fold_in_each(seeds, tf.ones(count, tf.int32))
        return self.decoder(
            self.decoder.initial_cells(z),
            num_steps=self.decoder.draw_num_steps(steps_seeds),
            seed=mask_seeds,
        )

    def growth_frames(self, z, seed=None, num_steps=None):
        """Mean images of every stage of growth, (T, B, H, W, C), for latents z.

        Doubling: the initial grid, every step and every doubling; non-doubling: it
        and every step (``num_steps`` of them, default max_steps).
        """
        if num_steps is None:
            num_steps = self.decoder.max_growth_steps
        steps_seed, picture_seed = split_seed(seed, 2)
        _, trajectory = self.grow(  # Only the likelihood's channels of every frame.
            self.decoder.initial_cells(z),
            steps_seed,
            num_steps,
            return_trajectory=True,
            trajectory_channels=self.likelihood.cell_channels,
        )
        return self.mean_image_of(trajectory, picture_seed)

    def damage_recovery(self, z, seed=None, num_steps=None, damage_size=None):
        """Mean images of grown samples, the same right after a square of
        ``damage_size`` cells (default: half the width) is zeroed at a random
        place, and after ``num_steps`` more steps (default: max_steps). For the
        non-doubling decoder (the paper's Fig. 9/10)."""
        if self.damage_kind != "damage_recovery":
            raise ValueError(
                "Damage recovery runs the non-doubling decoder past its "
                "growth; this model doubles. Use a *_damage preset."
            )
        grow_seed, damage_seed, picture_seed, recover_seed = split_seed(seed, 4)
        num_steps = self.config.max_steps if num_steps is None else num_steps
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1 (or None: max_steps), got {num_steps}.")
        grown = self.grow(self.decoder.initial_cells(z), grow_seed, num_steps)
        damaged = damage_square(grown, _damage_size(self.config, damage_size), damage_seed)
        recovered = self.grow(damaged, recover_seed, num_steps)
        return tuple(
            self.mean_image_of(cells, picture_seed) for cells in (grown, damaged, recovered)
        )

    def damaged_region(self, batch: int, seed=None, damage_size=None):
        """Where ``damage_recovery`` with ``seed`` zeroes the cells (see the
        module's ``damaged_region``)."""
        return damaged_region(self.config, batch, seed, damage_size)

    def final_cells_damaged_at(self, z, stage: int, seed=None):
        """Final cells when the right half of the cells is zeroed at the start
        of ``stage`` (0: the initial grid; s >= 1: after stage s-1's steps, just
        before doubling s): the paper's damage during growth (Fig. 11).
        ``seed``: the update masks' (the same as undamaged growth with it)."""
        if self.damage_kind != "damage_during_growth":
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
        return tf.stack(
            [
                self.mean_image_of(self.final_cells_damaged_at(z, s))
                for s in range(self.config.num_doublings + 1)
            ]
        )


def damaged_region(config: ModelConfig, batch: int, seed=None, damage_size=None):
    """Where ``VNCA.damage_recovery`` with ``seed`` zeroes the cells of a batch
    of ``batch`` latents: (batch, H, W, 1), 1 inside the erased square, else 0."""
    height, width = config.image_shape[:2]
    kept = damage_square(
        tf.ones([batch, height, width, 1]),
        _damage_size(config, damage_size),
        split_seed(seed, 4)[1],
    )
    return 1.0 - kept


def _damage_size(config: ModelConfig, damage_size=None) -> int:
    """The erased square's side: ``damage_size``, else half the width."""
    return config.image_shape[1] // 2 if damage_size is None else damage_size


# The decoder class of each kind of VNCA (configs.DECODERS: their names).
DECODER_CLASSES = {DoublingVNCA: DoublingNCA, NonDoublingVNCA: NonDoublingNCA}


def _mask_arguments(seed, rows=None) -> dict:
    """The decoder's update-mask arguments (see nca.update_masks) for a grow
    seed: the masks' own seed is derived from it, apart from the step count's."""
    return dict(seed=tf.random.experimental.stateless_fold_in(seed, 1), rows=rows)
