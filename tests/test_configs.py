import dataclasses

import pytest

from vnca_tf import configs


def test_paper_presets_carry_the_papers_numbers():
    mnist = configs.get_preset("mnist")
    assert mnist.dataset == "binarized_mnist"
    assert mnist.model.image_shape == (32, 32, 1)
    assert (mnist.model.latent_size, mnist.model.hidden_size) == (256, 256)
    assert (mnist.model.num_residual_blocks, mnist.model.num_doublings,
            mnist.model.steps_per_stage) == (4, 4, 8)
    assert (mnist.train.batch_size, mnist.train.learning_rate, mnist.train.clip_norm,
            mnist.train.num_steps) == (32, 1e-4, 10.0, 100_000)

    celeb_a = configs.get_preset("celeb_a")
    assert celeb_a.model.image_shape == (64, 64, 3)
    assert celeb_a.model.likelihood == "logistic_mixture"
    assert celeb_a.model.likelihood_channels == 10
    assert (celeb_a.model.num_doublings, celeb_a.model.steps_per_stage) == (5, 8)
    assert configs.get_preset("celeb_a_beta100").train.beta == 100.0
    assert configs.get_preset("noto_emoji").model.image_shape == (64, 64, 3)

    damage = configs.get_preset("mnist_damage")
    assert damage.model.decoder == "non_doubling"
    assert damage.model.image_shape == (28, 28, 1)
    assert damage.model.update_net == "small"
    assert (damage.model.latent_size, damage.model.hidden_size) == (128, 128)
    assert (damage.model.min_steps, damage.model.max_steps) == (32, 64)
    assert (damage.train.batch_size, damage.train.pool_size) == (128, 1024)

    celeb_damage = configs.get_preset("celeb_a_damage")
    assert celeb_damage.model.image_shape == (62, 62, 3)
    assert celeb_damage.model.hidden_size == 128
    assert (celeb_damage.model.min_steps, celeb_damage.model.max_steps) == (64, 128)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        configs.get_preset("mnsit")
    message = str(error.value)
    assert "'mnsit'" in message
    for name in ("mnist", "celeb_a", "mnist_damage", "test_mnist"):
        assert name in message


@pytest.mark.parametrize("changes, words", [
    (dict(likelihood="gaussian"), "likelihood 'gaussian'"),
    (dict(decoder="pyramid"), "decoder 'pyramid'"),
    (dict(update_net="gru"), "update_net 'gru'"),
    (dict(num_doublings=3), "16x16"),
    (dict(image_shape=(32, 32, 3)), "1 channel"),
    (dict(latent_size=0), "at least"),
])
def test_inconsistent_model_configs_are_rejected(changes, words):
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(configs.ModelConfig(), **changes)


def test_non_doubling_step_range_is_checked():
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        configs.ModelConfig(image_shape=(28, 28, 1), decoder="non_doubling",
                            min_steps=10, max_steps=5)


def test_bad_training_settings_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        configs.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="learning_rate"):
        configs.TrainConfig(learning_rate=-1.0)
