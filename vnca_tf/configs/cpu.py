"""The presets of the models that ship (saved_models/), small enough to train
on a 2-core CPU: a half-width doubling VNCA, and non-doubling ones that learn
to regrow, the last of them the browser demo's."""

import dataclasses

from vnca_tf.configs import paper
from vnca_tf.configs.schema import Preset, TrainConfig

# The shipped non-doubling VNCAs: as the paper's text (every cell updates) and
# as the authors' code (half of them).
MNIST_DAMAGE_CPU = dataclasses.replace(
    paper.MNIST_DAMAGE_TEXT,
    latent_size=64,
    hidden_size=64,
    min_steps=16,
    max_steps=32,
    encoder_channels=16,
)
MNIST_HEAL_CPU = dataclasses.replace(
    MNIST_DAMAGE_CPU, update_probability=paper.MNIST_DAMAGE.update_probability
)
# How the shipped non-doubling CPU models train (each preset changes a few fields).
DAMAGE_TRAIN = TrainConfig(
    batch_size=16,
    learning_rate=3e-4,
    num_steps=5_000,
    pool_size=256,
    damage_size=14,
    validation_every=500,
    image_every=1_000,
    checkpoint_every=250,
)
# How they fine-tune to regrow: gently, clip 1.0, every pooled image damaged.
REGROW_TRAIN = dataclasses.replace(
    DAMAGE_TRAIN, learning_rate=1e-4, clip_norm=paper.AUTHORS_CLIP, pool_damaged=1.0
)

PRESETS = (
    Preset(
        "mnist_cpu",
        "binarized_mnist",
        dataclasses.replace(
            paper.MNIST,
            latent_size=128,
            hidden_size=128,
            num_residual_blocks=2,
            encoder_channels=16,
        ),
        TrainConfig(
            batch_size=16,
            learning_rate=3e-4,
            num_steps=2_500,
            validation_every=500,
            image_every=1_000,
            checkpoint_every=250,
        ),
        "The shipped doubling VNCA (saved_models/mnist_cpu): the mnist preset "
        "at half width, trained on a 2-core CPU (69 min).",
    ),
    Preset(
        "mnist_damage_cpu",
        "binarized_mnist",
        MNIST_DAMAGE_CPU,
        DAMAGE_TRAIN,
        "The shipped non-doubling damage-recovery VNCA "
        "(saved_models/mnist_damage_cpu), trained on a 2-core CPU (49 min).",
    ),
    Preset(
        "mnist_heal_cpu",
        "binarized_mnist",
        MNIST_HEAL_CPU,
        dataclasses.replace(
            DAMAGE_TRAIN,
            num_steps=16_000,
            learning_rate_drops=(12_000,),
            clip_norm=paper.AUTHORS_CLIP,
        ),
        "mnist_damage_cpu trained as the authors' code trains mnist_damage (each "
        "cell updates with probability 0.5 per step, clip 1.0), longer, and with "
        "the learning rate cut tenfold for the last 4,000 steps, for a 2-core CPU: "
        "the start of mnist_regrow_cpu.",
    ),
    Preset(
        "mnist_regrow_cpu",
        "binarized_mnist",
        MNIST_HEAL_CPU,
        dataclasses.replace(
            REGROW_TRAIN,
            num_steps=8_000,
            learning_rate_drops=(5_000,),
            init_from="saved_models/mnist_heal_cpu/1",
        ),
        "mnist_heal_cpu fine-tuned to regrow, from the shipped model's weights, "
        "with every pooled image damaged (the authors' code damages half of "
        "them): the start of mnist_regrow_long_cpu.",
    ),
    Preset(
        "mnist_regrow_long_cpu",
        "binarized_mnist",
        dataclasses.replace(MNIST_HEAL_CPU, min_steps=32, max_steps=64),
        dataclasses.replace(
            REGROW_TRAIN, num_steps=1_500, init_from="saved_models/mnist_regrow_cpu/1"
        ),
        "The browser demo's model: mnist_regrow_cpu fine-tuned to grow for 32 to 64 "
        "steps, the authors' mnist_damage range, twice mnist_regrow_cpu's.",
    ),
)
