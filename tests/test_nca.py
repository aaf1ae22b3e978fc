import numpy as np
import pytest
import tensorflow as tf

from vnca_tf.models.layers import Doubling, UpdateNet
from vnca_tf.models.nca import DoublingNCA, NonDoublingNCA, damage_right_half, damage_square


def _update_net(state_size, hidden_size=None, kind="residual", perturb_seed=None):
    """An update net; with ``perturb_seed`` its zero last layer gets small random
    weights so the cells really change."""
    net = UpdateNet(state_size, hidden_size or state_size, kind, num_residual_blocks=1)
    net.build((None, None, None, state_size))
    if perturb_seed is not None:
        kernel = tf.random.stateless_normal(net.out.kernel.shape, [perturb_seed, 0]) * 0.05
        net.out.kernel.assign(kernel)
    return net


@pytest.mark.parametrize("num_doublings, side", [(4, 32), (5, 64)])
def test_full_size_doubling_decoder_grows_the_2x2_grid_to_the_image(num_doublings, side, rng):
    # The paper's update net (256 channels, 4 residual blocks), MNIST and CelebA.
    net = UpdateNet(256, 256, "residual", num_residual_blocks=4)
    decoder = DoublingNCA(net, num_doublings, steps_per_stage=8)
    decoder.build((None, None, None, 256))
    z = rng.normal(size=(1, 256)).astype(np.float32)
    initial = decoder.initial_cells(z)
    assert initial.shape == (1, 2, 2, 256)
    cells = decoder(initial)
    assert cells.shape == (1, side, side, 256)
    # At initialisation the last layer is zero: the grown grid is the tiled initial grid.
    np.testing.assert_array_equal(cells, np.broadcast_to(z[:, None, None, :], cells.shape))


def test_trajectory_has_every_step_and_doubling_and_children_equal_parents(rng):
    decoder = DoublingNCA(_update_net(6, perturb_seed=1), num_doublings=4, steps_per_stage=8)
    z = rng.normal(size=(2, 6)).astype(np.float32)
    cells, trajectory = decoder(decoder.initial_cells(z), return_trajectory=True)
    # The initial grid, 8 steps, then 4 x (a doubling and 8 steps): 45 frames, as the
    # authors' growth figures.
    assert trajectory.shape == (45, 2, 32, 32, 6)
    np.testing.assert_array_equal(trajectory[-1], cells)
    frames = trajectory.numpy()
    for stage in range(1, 5):
        doubling = 9 * stage  # Frame index of the stage's doubling.
        # A doubling changes no cell state: each child equals its parent.
        np.testing.assert_array_equal(frames[doubling], frames[doubling - 1])
        # Steps do change the cells.
        assert np.abs(frames[doubling + 1] - frames[doubling]).max() > 1e-4
    # The first frame is the 2x2 initial grid upsampled.
    np.testing.assert_array_equal(frames[0], np.broadcast_to(z[:, None, None, :], frames[0].shape))


def test_growth_continues_from_given_cells_at_the_matching_stage(rng):
    net = _update_net(5, perturb_seed=2)
    full = DoublingNCA(net, num_doublings=3, steps_per_stage=3)
    first_stage = DoublingNCA(net, num_doublings=0, steps_per_stage=3)
    initial = full.initial_cells(rng.normal(size=(2, 5)).astype(np.float32))
    after_stage_0 = first_stage(initial)
    assert after_stage_0.shape == (2, 2, 2, 5)
    # Doubling the stage-0 result gives a 4x4 grid: the start of stage 1.
    resumed = full(Doubling()(after_stage_0))
    np.testing.assert_allclose(resumed, full(initial), rtol=1e-5, atol=1e-6)


def test_doubling_decoder_rejects_grids_it_cannot_grow():
    decoder = DoublingNCA(_update_net(4), num_doublings=2, steps_per_stage=1)
    with pytest.raises(ValueError, match=r"\[2, 4, 8\].*side 3"):
        decoder(tf.zeros([1, 3, 3, 4]))
    with pytest.raises(ValueError, match="square"):
        decoder(tf.zeros([1, 2, 4, 4]))


def test_non_doubling_decoder_tiles_z_over_the_grid_and_runs_drawn_steps(rng):
    decoder = NonDoublingNCA(
        _update_net(4, kind="small", perturb_seed=3), (7, 9), min_steps=3, max_steps=6
    )
    z = rng.normal(size=(2, 4)).astype(np.float32)
    initial = decoder.initial_cells(z)
    assert initial.shape == (2, 7, 9, 4)
    draws = {int(decoder.draw_num_steps(tf.constant([i, 0]))) for i in range(200)}
    assert draws == {3, 4, 5, 6}
    cells, trajectory = decoder(initial, num_steps=5, return_trajectory=True)
    assert trajectory.shape == (6, 2, 7, 9, 4)
    np.testing.assert_array_equal(trajectory[0], initial)
    np.testing.assert_array_equal(trajectory[-1], cells)
    # Running 2 then 3 steps (a pooled state continued) equals running 5.
    np.testing.assert_allclose(
        decoder(decoder(initial, num_steps=2), num_steps=3), cells, rtol=1e-5, atol=1e-6
    )


def test_non_doubling_decoder_checks_grid_and_step_count():
    decoder = NonDoublingNCA(_update_net(4, kind="small"), (7, 9), 3, 6)
    with pytest.raises(ValueError, match=r"\(7, 9\) grid"):
        decoder(tf.zeros([1, 9, 7, 4]), num_steps=3)
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        decoder(tf.zeros([1, 7, 9, 4]), num_steps=7)


@pytest.mark.slow
def test_decoders_compile_with_xla_and_match_eager_values_and_gradients(rng):
    # Each decoder also with per-step recomputation (sharing its update net):
    # eager and XLA, the same loss and gradients as the plain decoder. With
    # stochastic updates, XLA draws other masks from the same seed (its random
    # bit generator is not the CPU kernels'), so there each mode is compared
    # with the plain decoder in the same mode.
    doubling_net = _update_net(6, perturb_seed=4)
    small_net = _update_net(6, kind="small", perturb_seed=5)
    z = tf.constant(rng.normal(size=(2, 6)).astype(np.float32))

    def loss_and_gradients(decoder, **kwargs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(decoder(decoder.initial_cells(z), **kwargs)))
        return loss, tape.gradient(loss, decoder.update_net.trainable_variables)

    def xla(decoder, **kwargs):
        return tf.function(lambda: loss_and_gradients(decoder, **kwargs), jit_compile=True)()

    for make, kwargs, same_masks in (
        (
            lambda r: DoublingNCA(doubling_net, num_doublings=2, steps_per_stage=3, recompute=r),
            {},
            True,
        ),
        (
            lambda r: NonDoublingNCA(small_net, (8, 8), 2, 4, recompute=r),
            {"num_steps": tf.constant(3)},
            True,
        ),
        (
            lambda r: NonDoublingNCA(small_net, (8, 8), 2, 4, update_probability=0.5, recompute=r),
            {"num_steps": tf.constant(3), "seed": tf.constant([3, 4])},
            False,
        ),
    ):
        eager_reference = loss_and_gradients(make(False), **kwargs)
        xla_reference = eager_reference if same_masks else xla(make(False), **kwargs)
        for decoder in (make(False), make(True)):
            for (loss, grads), (reference_loss, reference_grads) in (
                (xla(decoder, **kwargs), xla_reference),
                (loss_and_gradients(decoder, **kwargs), eager_reference),
            ):
                np.testing.assert_allclose(loss, reference_loss, rtol=1e-4)
                for grad, reference in zip(grads, reference_grads, strict=True):
                    assert np.abs(reference).max() > 0
                    np.testing.assert_allclose(grad, reference, rtol=1e-3, atol=1e-4)


def test_stochastic_updates_change_whole_cells_with_the_given_probability(rng):
    net = _update_net(6, kind="small", perturb_seed=6)
    decoder = NonDoublingNCA(net, (16, 16), 1, 4, update_probability=0.5)
    cells = tf.constant(rng.normal(size=(8, 16, 16, 6)).astype(np.float32))
    seed = tf.constant([5, 6])
    stepped = decoder(cells, num_steps=1, seed=seed).numpy()
    changed = stepped != cells.numpy()
    # Per cell: all of a cell's channels update, or none (a Bernoulli mask per
    # cell), and about half the cells do.
    assert np.array_equal(changed.all(-1), changed.any(-1))
    assert 0.45 < changed.all(-1).mean() < 0.55
    every = NonDoublingNCA(net, (16, 16), 1, 4)(cells, num_steps=1).numpy()
    np.testing.assert_allclose(stepped[changed], every[changed], rtol=1e-6)
    # The same seed, the same masks; another seed, others.
    np.testing.assert_array_equal(decoder(cells, num_steps=1, seed=seed), stepped)
    assert np.any(decoder(cells, num_steps=1, seed=tf.constant([5, 7])).numpy() != stepped)
    # A batch in parts, each told its rows, gets the whole batch's masks.
    grown = decoder(cells, num_steps=3, seed=seed).numpy()
    parts = [
        decoder(cells[first : first + 4], num_steps=3, seed=seed, rows=(first, 8))
        for first in (0, 4)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), grown)
    with pytest.raises(ValueError, match="draws its update masks from a seed"):
        decoder(cells, num_steps=1)


def test_doubling_stages_draw_the_same_masks_wherever_growth_starts(rng):
    net = _update_net(6, perturb_seed=7)
    decoder = DoublingNCA(net, num_doublings=2, steps_per_stage=2, update_probability=0.5)
    z = tf.constant(rng.normal(size=(3, 6)).astype(np.float32))
    seed = tf.constant([1, 2])
    whole = decoder(decoder.initial_cells(z), seed=seed)
    after_stage_0 = decoder.doubling(decoder(decoder.initial_cells(z), last_stage=0, seed=seed))
    np.testing.assert_array_equal(decoder(after_stage_0, seed=seed), whole)


def test_square_damage_zeroes_one_square_per_image_at_seeded_positions():
    cells = tf.ones([64, 10, 12, 3])
    damaged = damage_square(cells, 4, tf.constant([7, 8])).numpy()
    hit = damaged[..., 0] == 0
    assert (hit.sum(axis=(1, 2)) == 16).all()
    for image in hit:  # One contiguous 4x4 square.
        rows, cols = np.nonzero(image)
        assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
    # Every channel of a hit cell is zeroed; the rest is untouched.
    np.testing.assert_array_equal(damaged.min(axis=-1) == damaged.max(axis=-1), True)
    corners = {(np.nonzero(image)[0].min(), np.nonzero(image)[1].min()) for image in hit}
    assert len(corners) > 20  # Positions vary across the batch ...
    assert {r for r, _ in corners} <= set(range(7)) and {c for _, c in corners} <= set(range(9))
    # ... and the same seed gives the same damage.
    np.testing.assert_array_equal(damage_square(cells, 4, tf.constant([7, 8])), damaged)


def test_right_half_damage_and_bad_damage_size():
    cells = tf.ones([2, 4, 6, 3])
    damaged = damage_right_half(cells).numpy()
    np.testing.assert_array_equal(damaged[:, :, :3], 1.0)
    np.testing.assert_array_equal(damaged[:, :, 3:], 0.0)
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        damage_square(cells, 5, tf.constant([0, 0]))
