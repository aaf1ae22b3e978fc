import keras
import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import count_params

from vnca_tf.models import build_model
from vnca_tf.models.initializers import FanInUniform
from vnca_tf.models.layers import Doubling, Residual, UpdateNet
from vnca_tf.models.vnca import VNCA


def _built(layer, channels):
    layer.build((None, None, None, channels))
    return layer


def test_residual_update_net_has_the_papers_parameter_count():
    # Appendix A.5: 3x3 conv 256->256, four residual blocks of two 1x1 convs,
    # a final 1x1 conv: 590,080 + 4 * 131,584 + 65,792.
    net = _built(UpdateNet(256, 256, "residual", num_residual_blocks=4), 256)
    assert count_params(net) == 1_182_208


def test_small_update_net_has_the_non_doubling_parameter_count():
    # 3x3 conv 128->128 with bias, ELU, bias-free 1x1 conv 128->128.
    net = _built(UpdateNet(128, 128, "small"), 128)
    assert count_params(net) == 163_968


@pytest.mark.parametrize("kind", ["residual", "small"])
def test_update_net_starts_at_zero_but_is_not_constant(kind, rng):
    net = _built(UpdateNet(8, 16, kind, num_residual_blocks=2, num_hidden_layers=1), 8)
    cells = rng.normal(size=(2, 5, 5, 8)).astype(np.float32)
    np.testing.assert_array_equal(net(cells), np.zeros_like(cells))
    # With a non-zero last layer the update depends on the 3x3 neighbourhood.
    net.out.kernel.assign(tf.ones_like(net.out.kernel))
    moved = cells.copy()
    moved[:, 2, 3] += 1.0  # A neighbour of cell (2, 2) changes ...
    changed = net(moved).numpy() != net(cells).numpy()
    assert changed[:, 2, 2].all()  # ... so cell (2, 2)'s update changes,
    assert not changed[:, 0, 0].any()  # a cell two away is unaffected.


def test_residual_block_adds_its_input(rng):
    block = Residual(6)
    block.build((None, 3, 3, 6))
    x = rng.normal(size=(1, 3, 3, 6)).astype(np.float32)
    expected = x + block.outer(tf.nn.elu(block.inner(x)))
    np.testing.assert_allclose(block(x), expected, rtol=1e-6)


def test_doubling_copies_every_cell_right_below_and_diagonally(rng):
    cells = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    doubled = Doubling()(cells).numpy()
    assert doubled.shape == (2, 6, 8, 5)
    for dy in (0, 1):
        for dx in (0, 1):
            np.testing.assert_array_equal(doubled[:, dy::2, dx::2], cells)


def test_unknown_update_net_kind_is_an_error():
    with pytest.raises(ValueError, match="'gru'"):
        UpdateNet(8, 8, "gru")


def _check_uniform(values, bound, moments=True):
    """Values inside (-bound, bound); with ``moments``, a uniform's mean and std."""
    values = np.asarray(values, np.float64).ravel()
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    if moments:  # Large tensors: the mean and std of U(-bound, bound).
        assert abs(values.mean()) < 0.01 * bound
        assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.01)
    else:  # A bias (32 to 512 values): spread over the interval, not zero.
        assert np.abs(values).max() > 0.8 * bound and values.std() > 0.4 * bound


def test_layers_start_from_pytorchs_default_initialisation():
    # The authors' init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    # the update net's last layer zero (fidelity README's table).
    keras.utils.set_random_seed(0)
    model = VNCA(presets.get("mnist").model)
    encoder, net = model.encoder, model.update_net
    for layer, fan_in in (
        (encoder.first_conv, 1 * 25),
        (encoder.strided_3, 256 * 25),
        (encoder.dense, 2048),
        (net.perceive, 256 * 9),
        (net.body_0.inner, 256),
        (net.body_3.outer, 256),
    ):
        _check_uniform(
            layer.kernel, 1 / np.sqrt(fan_in), moments=np.prod(layer.kernel.shape) > 50_000
        )
        _check_uniform(layer.bias, 1 / np.sqrt(fan_in), moments=False)
    assert not np.any(net.out.kernel.numpy()) and not np.any(net.out.bias.numpy())
    # Transposed convolutions: fan-in out_channels * 25, as PyTorch counts it.
    baseline = build_model(presets.get("mnist_baseline").model)
    upsample = baseline.upsample_0
    assert upsample.kernel.shape == (5, 5, 256, 512)
    _check_uniform(upsample.kernel, 1 / np.sqrt(256 * 25))
    _check_uniform(upsample.bias, 1 / np.sqrt(256 * 25), moments=False)


def test_fan_in_uniform_rejects_a_bad_fan_in_and_round_trips():
    with pytest.raises(ValueError, match="fan_in must be >= 1"):
        FanInUniform(0)
    restored = FanInUniform.from_config(FanInUniform(25, seed=3).get_config())
    assert (restored.fan_in, restored.maxval) == (25, 0.2)
