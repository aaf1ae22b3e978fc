"""The browser's step-by-step graphs grow what the model grows."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from vnca_tf import browser_graphs, configs
from vnca_tf.model import build_model


def _model(name, **changes):
    config = dataclasses.replace(configs.get_preset(name).model, **changes)
    model = build_model(config)
    for weight in model.update_net.weights:  # Past the zero-initialised last layer.
        weight.assign(tf.random.stateless_normal(weight.shape, [1, len(weight.name)]) * 0.05)
    return model


@pytest.mark.parametrize("name", ["test_mnist", "test_mnist_damage"])
def test_step_by_step_growth_equals_the_models(name, tmp_path, rng):
    # Every cell updates (probability 1): the page's masks are then all ones.
    model = _model(name, update_probability=1.0)
    config = model.config
    paths = browser_graphs.save(model, str(tmp_path))
    graphs = {n: tf.saved_model.load(p).signatures["serving_default"]
              for n, p in paths.items()}
    doubling = config.decoder == "doubling"
    assert set(graphs) == set(browser_graphs.GRAPHS) - (set() if doubling else {"double"})
    images = (rng.random((2, *config.image_shape)) > 0.5).astype(np.float32)
    latents = graphs["encode"](images=tf.constant(images))["latents"]
    np.testing.assert_allclose(latents, model.encode_mean(images), rtol=1e-5, atol=1e-6)

    cells = graphs["initial_cells"](latents=latents)["cells"]
    stages = config.num_doublings + 1 if doubling else 1
    steps = config.steps_per_stage if doubling else 4
    for stage in range(stages):
        if stage:
            cells = graphs["double"](cells=cells)["cells"]
        for _ in range(steps):
            mask = tf.ones([*cells.shape[:3], 1])
            cells = graphs["step"](cells=cells, mask=mask)["cells"]
    image = graphs["picture"](cells=cells)["image"]
    expected = model.growth_frames(latents, seed=0, num_steps=None if doubling else steps)[-1]
    assert image.shape == (2, *config.image_shape)
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-5)
    assert float(tf.math.reduce_std(image)) > 1e-3  # A picture, not a constant.

    # A zero mask leaves the cells as they are.
    still = graphs["step"](cells=cells, mask=tf.zeros([*cells.shape[:3], 1]))["cells"]
    np.testing.assert_array_equal(still, cells)


def test_only_binary_vncas_have_browser_graphs():
    with pytest.raises(ValueError, match="binary images"):
        browser_graphs.BrowserGraphs(build_model(configs.get_preset("test_celeb_a").model))


def test_the_index_offers_regrowing_models_first(tmp_path):
    for name, decoder in (("a_doubling", "doubling"), ("b_regrows", "non_doubling")):
        (tmp_path / name).mkdir()
        (tmp_path / name / browser_graphs.MANIFEST).write_text(
            json.dumps({"preset": {"model": {"decoder": decoder}}}))
    (tmp_path / "not_a_model").mkdir()
    path = browser_graphs.write_index(str(tmp_path))
    assert json.load(open(path)) == ["b_regrows", "a_doubling"]


def test_a_missing_converter_says_how_to_make_it(tmp_path):
    preset = configs.get_preset("test_mnist_damage")
    with pytest.raises(FileNotFoundError, match="web/make_converter_env.sh"):
        browser_graphs.convert(build_model(preset.model), preset, str(tmp_path / "m"),
                               converter=str(tmp_path / "none"))
