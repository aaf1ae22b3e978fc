import numpy as np
import presets
import pytest
import tensorflow as tf
from helpers import count_params

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
