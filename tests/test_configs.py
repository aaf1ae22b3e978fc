import dataclasses
import json

import presets
import pytest

from vnca_tf import configs


def test_paper_presets_carry_the_papers_numbers():
    mnist = configs.get_preset("mnist")
    assert mnist.dataset == "binarized_mnist"
    assert mnist.model.image_shape == (32, 32, 1)
    assert (mnist.model.latent_size, mnist.model.hidden_size) == (256, 256)
    assert (
        mnist.model.num_residual_blocks,
        mnist.model.num_doublings,
        mnist.model.steps_per_stage,
    ) == (4, 4, 8)
    assert (
        mnist.train.batch_size,
        mnist.train.learning_rate,
        mnist.train.clip_norm,
        mnist.train.num_steps,
    ) == (32, 1e-4, 10.0, 100_000)

    celeb_a = configs.get_preset("celeb_a")
    assert celeb_a.model.image_shape == (64, 64, 3)
    assert celeb_a.model.likelihood == "logistic_mixture"
    assert celeb_a.model.likelihood_channels == 10
    assert (celeb_a.model.num_doublings, celeb_a.model.steps_per_stage) == (5, 8)
    assert configs.get_preset("celeb_a_beta100").train.beta == 100.0
    assert configs.get_preset("noto_emoji").model.image_shape == (64, 64, 3)

    beta100 = configs.get_preset("celeb_a_beta100")  # The authors' code behind 5.40.
    assert (beta100.train.beta, beta100.train.clip_norm, beta100.model.num_mixtures) == (
        100.0,
        1.0,
        4,
    )
    assert (beta100.model.posterior_loc_bound, beta100.model.posterior_log_scale_bound) == (
        100.0,
        7.0,
    )
    assert celeb_a.model.encoder_input == "likelihood_scale"  # x / 127.5 - 1

    # Non-doubling MNIST: the code behind -90.97 nats, and the paper's text.
    for name, probability, clip in (("mnist_damage", 0.5, 1.0), ("mnist_damage_text", 1.0, 10.0)):
        damage = configs.get_preset(name)
        assert damage.model.decoder == "non_doubling"
        assert damage.model.image_shape == (28, 28, 1)
        assert damage.model.update_net == "small"
        assert (damage.model.latent_size, damage.model.hidden_size) == (128, 128)
        assert (damage.model.min_steps, damage.model.max_steps) == (32, 64)
        assert (damage.train.batch_size, damage.train.pool_size) == (128, 1024)
        assert (damage.model.update_probability, damage.train.clip_norm) == (probability, clip)

    # Non-doubling CelebA: the code behind 5.03 bits/dim, and the paper's text.
    code, text = (configs.get_preset(n) for n in ("celeb_a_damage", "celeb_a_damage_text"))
    assert (
        code.model.image_shape,
        code.model.latent_size,
        code.model.hidden_size,
        code.model.update_net,
        code.model.num_residual_blocks,
        code.train.damage_size,
    ) == ((32, 32, 3), 256, 128, "residual", 4, 16)
    assert (
        text.model.image_shape,
        text.model.latent_size,
        text.model.hidden_size,
        text.model.update_net,
        text.train.damage_size,
    ) == ((62, 62, 3), 128, 128, "small", 31)
    for damage in (code, text):
        assert (damage.model.min_steps, damage.model.max_steps) == (64, 128)
    # a17aafd fed its encoder ToTensor's [0, 1]; the text keeps [-1, 1].
    assert (code.model.encoder_input, text.model.encoder_input) == (
        "unit_interval",
        "likelihood_scale",
    )
    # The paper's bits/dim are in PixelCNN++'s bins, and so is every RGB preset.
    for name in ("celeb_a", "celeb_a_beta100", "noto_emoji", "celeb_a_damage"):
        assert configs.get_preset(name).model.likelihood_convention == "pixelcnn"


@pytest.mark.parametrize(
    "dataset, model, name",
    [
        ("binarized_mnist", "vnca", "mnist"),
        ("celeb_a", "vnca", "celeb_a"),
        ("noto_emoji", "vnca", "noto_emoji"),
        ("binarized_mnist", "damage", "mnist_damage"),
        ("celeb_a", "damage", "celeb_a_damage"),
        ("celeb_a", "baseline", "celeb_a_baseline"),
    ],
)
def test_datasets_pick_the_preset_behind_the_papers_number(dataset, model, name):
    assert configs.preset_for(dataset, model).name == name


def test_a_dataset_without_that_experiment_lists_the_known_ones():
    with pytest.raises(ValueError, match="no baseline experiment on 'noto_emoji'.*celeb_a"):
        configs.preset_for("noto_emoji", "baseline")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        configs.get_preset("mnsit")
    message = str(error.value)
    assert "'mnsit'" in message
    for name in ("mnist", "celeb_a", "mnist_damage", "mnist_cpu", "FILE.py:NAME"):
        assert name in message


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(likelihood="gaussian"), "likelihood 'gaussian'"),
        (dict(decoder="pyramid"), "decoder 'pyramid'"),
        (dict(update_net="gru"), "update_net 'gru'"),
        (dict(num_doublings=3), "16x16"),
        (dict(image_shape=(32, 32, 3)), "1 channel"),
        (dict(latent_size=0), "latent_size must be >= 1, got 0"),
        (dict(hidden_size=-3), "hidden_size must be >= 1, got -3"),
        (dict(num_residual_blocks=-1), "num_residual_blocks must be >= 0"),
        (
            dict(likelihood="logistic_mixture", image_shape=(32, 32, 3), latent_size=5),
            "latent_size .5. must be at least the 10 cell channels",
        ),
        (dict(update_probability=0.0), "update_probability must be in"),
        (dict(update_probability=1.5), "update_probability must be in"),
        (dict(update_probability=float("nan")), "update_probability must be in"),
        (dict(encoder_input="zero_one"), "encoder_input 'zero_one'"),
        (
            dict(likelihood_convention="tf"),
            "likelihood_convention 'tf'; choose one of pixelcnn, exact",
        ),
        (dict(posterior_loc_bound=-1.0), "posterior_loc_bound must be > 0"),
        (dict(posterior_log_scale_bound=0.0), "posterior_log_scale_bound must be > 0"),
        (dict(architecture="baseline", update_probability=0.5), "baseline has none"),
    ],
)
def test_inconsistent_model_configs_are_rejected(changes, words):
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(configs.ModelConfig(), **changes)


def test_non_doubling_step_range_is_checked():
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        configs.ModelConfig(
            image_shape=(28, 28, 1), decoder="non_doubling", min_steps=10, max_steps=5
        )


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0),
        ("num_steps", -3),
        ("learning_rate", -1.0),
        ("learning_rate", float("nan")),
        ("learning_rate", float("inf")),
        ("clip_norm", float("nan")),
        ("beta", float("nan")),
        ("beta", -1.0),
        ("checkpoint_minutes", 0.0),
        ("checkpoint_minutes", float("nan")),
        ("learning_rate_drops", (0,)),
        ("learning_rate_drops", (100_000,)),
        ("learning_rate_drops", (50, 20)),
        ("learning_rate_drops", (20, 20)),
        ("pool_damaged", 1.5),
        ("pool_damaged", -0.1),
        ("pool_damaged", float("nan")),
    ],
)
def test_bad_training_settings_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"{field} must be"):
        configs.TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("microbatches", 0),
        ("worker_timeout", 0.0),
        ("worker_timeout", float("inf")),
        ("console_seconds", 0.0),
        ("console_seconds", float("nan")),
    ],
)
def test_bad_run_settings_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"{field} must be"):
        configs.RunConfig(**{field: value})


def test_configs_saved_under_earlier_field_names_still_load():
    saved = dataclasses.asdict(configs.get_preset("mnist_cpu"))
    saved["train"]["eval_every"] = saved["train"].pop("validation_every")
    saved["train"]["eval_batches"] = saved["train"].pop("validation_batches")
    assert configs.preset_from_dict(saved) == configs.get_preset("mnist_cpu")


def test_rgb_models_saved_before_the_bin_convention_load_as_they_trained():
    # They computed every bin exactly; a binary model has no bins to convert.
    for name, convention in (("celeb_a", "exact"), ("mnist_cpu", "pixelcnn")):
        saved = dataclasses.asdict(configs.get_preset(name))
        del saved["model"]["likelihood_convention"]
        assert configs.preset_from_dict(saved).model.likelihood_convention == convention


def test_learning_rate_falls_tenfold_after_each_drop_and_survives_config_json():
    from vnca_tf.training.optimizers import learning_rate_at

    assert [learning_rate_at(step, 1e-3, (2, 3)) for step in (1, 2, 3, 4, 9)] == (
        pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-5])
    )
    assert learning_rate_at(7, 3e-4) == 3e-4
    preset = dataclasses.replace(
        presets.get("test_mnist"),
        train=configs.TrainConfig(num_steps=30, learning_rate_drops=(10, 20)),
    )
    saved = json.loads(json.dumps(dataclasses.asdict(preset)))
    assert configs.preset_from_dict(saved) == preset
