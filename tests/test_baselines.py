import dataclasses

import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import count_params

from vnca_tf import configs
from vnca_tf.configs import paper
from vnca_tf.models import build_model
from vnca_tf.models.baselines import ConvBaseline
from vnca_tf.models.vnca import VNCA


@pytest.mark.parametrize(
    "name, encoder, decoder",
    [
        # A.6: "9.5M trainable parameters" (28x28 MNIST, |z| = 128).
        ("mnist_baseline", 4_878_336, 4_617_473),
        # A.1: the CelebA encoder, Linear(256, 4096) + ELU, six transposed convs.
        ("celeb_a_baseline", 8_550_208, 18_520_874),
    ],
)
def test_baselines_have_the_appendix_parameter_counts(name, encoder, decoder):
    model = build_model(presets.get(name).model)
    assert isinstance(model, ConvBaseline)
    assert count_params(model.encoder) == encoder
    assert count_params(model) == encoder + decoder


@pytest.mark.parametrize(
    "name, cells", [("mnist_baseline", (2, 28, 28, 1)), ("celeb_a_baseline", (2, 64, 64, 10))]
)
def test_baseline_decoder_output_covers_the_image(name, cells, rng):
    model = build_model(presets.get(name).model)
    z = rng.normal(size=(2, model.config.latent_size)).astype(np.float32)
    assert model.decode_cells(z).shape == cells


def _torch_conv_transpose(x, weight, bias, stride, padding, output_padding=0):
    """PyTorch's ConvTranspose2d as its documentation defines it, in NumPy, on
    NHWC ``x`` with a (in, out, k, k) ``weight``: out[y, x] gathers
    in[i, j] * weight[:, :, a, b] where y = i * stride - padding + a; the
    output has (n - 1) * stride - 2 * padding + k + output_padding rows."""
    batch, height, width, _ = x.shape
    _, channels, kernel, _ = weight.shape
    size = [(n - 1) * stride - 2 * padding + kernel + output_padding for n in (height, width)]
    out = np.zeros((batch, *size, channels)) + bias
    for i in range(height):
        for j in range(width):
            for a in range(kernel):
                for b in range(kernel):
                    y, z = i * stride - padding + a, j * stride - padding + b
                    if 0 <= y < size[0] and 0 <= z < size[1]:
                        out[:, y, z] += x[:, i, j] @ weight[:, :, a, b]
    return out


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_MNIST = presets.get("test_mnist_baseline").model


@pytest.mark.parametrize(
    "config, last_padding",
    [
        (_MNIST, 4),  # The authors' pad + 2: 32 -> 28.
        (
            dataclasses.replace(
                paper.CELEB_A_BASELINE, latent_size=12, encoder_channels=2, baseline_channels=32
            ),
            2,
        ),
        # Baselines saved before the layout was the authors': Keras' "same".
        (dataclasses.replace(_MNIST, baseline_upsampling="keras_same"), 4),
    ],
)
def test_baseline_decoder_is_the_authors_pytorch_layout(config, last_padding, rng):
    model = build_model(config)
    for weight in model.weights:  # Biases too, so that a shifted crop shows.
        weight.assign(0.1 * rng.standard_normal(weight.shape).astype(np.float32))
    z = rng.normal(size=(2, config.latent_size)).astype(np.float32)
    dense = z @ model.dense.kernel.numpy() + model.dense.bias.numpy()
    hidden = (_elu(dense) if config.baseline_dense_elu else dense).reshape(
        2, 2, 2, config.baseline_channels
    )
    torch_weight = lambda layer: layer.kernel.numpy().transpose(3, 2, 0, 1)  # noqa: E731
    for layer in model.upsamplers:
        if config.baseline_upsampling == "pytorch":  # padding=2, output_padding=1.
            full = _torch_conv_transpose(hidden, torch_weight(layer), layer.bias.numpy(), 2, 2, 1)
        else:  # Keras' "same" keeps [1, 2n + 1): padding=1, its last row and column cut.
            side = 2 * hidden.shape[1]
            full = _torch_conv_transpose(hidden, torch_weight(layer), layer.bias.numpy(), 2, 1)
            full = full[:, :side, :side]
        hidden = _elu(full)
    expected = _torch_conv_transpose(
        hidden, torch_weight(model.out), model.out.bias.numpy(), 1, last_padding
    )
    assert expected.shape[1:3] == config.image_shape[:2]
    np.testing.assert_allclose(model.decode_cells(z).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_a_baseline_saved_before_the_pytorch_layout_reads_back_as_it_was_trained():
    saved = configs.preset_to_dict(presets.get("test_mnist_baseline"))
    assert configs.preset_from_dict(saved).model.baseline_upsampling == "pytorch"
    del saved["model"]["baseline_upsampling"]  # A config.json or export of before.
    assert configs.preset_from_dict(saved).model.baseline_upsampling == "keras_same"


def test_baseline_damage_before_an_up_convolution_zeroes_the_right_half(rng):
    model = build_model(presets.get("test_mnist_baseline").model)
    z = rng.normal(size=(3, 16)).astype(np.float32)
    intact = model.decode_cells(z).numpy()
    for stage in range(model.num_upsamplings + 1):
        damaged = model.decode_cells(z, damage_before=stage).numpy()
        assert damaged.shape == intact.shape
        assert np.abs(damaged - intact)[:, :, -4:].max() > 1e-4  # The right edge changes.
    # Damaging the last hidden grid leaves the left edge (beyond the 5x5
    # kernel's reach) as it was.
    last = model.decode_cells(z, damage_before=model.num_upsamplings).numpy()
    np.testing.assert_allclose(last[:, :, :8], intact[:, :, :8], rtol=1e-5, atol=1e-6)


def test_baseline_shares_the_vae_interface(rng):
    model = build_model(presets.get("test_mnist_baseline").model)
    x = (rng.random((4, 28, 28, 1)) > 0.5).astype(np.float32)
    terms = model.negative_elbo(x, seed=1)
    iwae = model.iwae(x, 32, seed=1).numpy()
    assert np.isfinite(iwae).all() and terms["loss"].shape == (4,)
    samples, means = model.sample(3, seed=2)
    assert samples.shape == means.shape == (3, 28, 28, 1)


def test_doubling_vnca_damage_at_stage_zero_damages_the_initial_grid(rng):
    model = VNCA(presets.get("test_mnist").model)
    kernel = model.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [1, 2]) * 0.05)
    z = rng.normal(size=(2, 16)).astype(np.float32)
    initial = model.decoder.initial_cells(z).numpy()
    initial[:, :, 1:] = 0.0
    np.testing.assert_allclose(
        model.final_cells_damaged_at(z, 0), model.decoder(initial), rtol=1e-6
    )
    assert model.decoder(model.decoder.initial_cells(z), last_stage=2).shape == (2, 8, 8, 16)
    for stage in range(model.config.num_doublings + 1):
        assert model.final_cells_damaged_at(z, stage).shape == (2, 32, 32, 16)
