"""Numbers a researcher can publish: subsets and figures that stand for the
whole split, an IWAE estimate that is right against an exactly known log p(x)
and does not depend on how it was batched, and validation that never reads
the test split."""

import dataclasses

import numpy as np
import presets
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf import configs, data
from vnca_tf.evaluation import likelihood
from vnca_tf.models import bounds, build_model
from vnca_tf.models.nca import NonDoublingNCA
from vnca_tf.training.inputs import TrainingInputs

tfd = tfp.distributions


def _ink(images):
    return images.reshape(len(images), -1).sum(axis=1).astype(np.float64)


def test_a_subset_of_the_sorted_test_file_stands_for_the_whole_file(data_dir):
    # The binarized MNIST test file is in class order: its first 400 images
    # are zeros, with more ink than the average digit. A seeded draw is not.
    split = data.load_split("binarized_mnist", "test", data_dir=data_dir, image_size=28)
    whole = _ink(np.concatenate([batch.numpy() for batch in split.batch(5000)]))
    assert whole[:400].mean() > whole.mean() + 15  # The head is not the file.
    subset, drawn = data.draw(split, 400, seed=0)
    ids, images = next(iter(subset.batch(400)))
    ink = _ink(images.numpy())
    standard_error = whole.std() / np.sqrt(400)
    assert abs(ink.mean() - whole.mean()) < 3 * standard_error, (ink.mean(), whole.mean())
    np.testing.assert_array_equal(ink, whole[ids.numpy()])  # Each image with its index.
    assert drawn == {
        "count": 400,
        "of": 10_000,
        "seed": 0,
        "how": "uniformly without replacement: numpy.random.default_rng(seed).choice, "
        "in file order",
    }
    np.testing.assert_array_equal(ids, np.sort(data.subsets.draw_indices(10_000, 400, 0)))
    again, _ = data.draw(split, 400, seed=0)
    np.testing.assert_array_equal(next(iter(again.batch(400)))[0], ids)  # Same seed, same.
    other, _ = data.draw(split, 400, seed=1)
    assert len(set(next(iter(other.batch(400)))[0].numpy()) & set(ids.numpy())) < 100
    assert data.draw(split, None, seed=0)[1]["how"] == "the whole split"
    assert data.subsets.describe(drawn, "test") == (
        "400 of the 10,000 test images, drawn with seed 0"
    )


def test_the_figures_images_show_every_digit_in_a_random_order(data_dir):
    pairs = data.load_split("mnist", "test", data_dir=data_dir, with_labels=True)
    images, labels = data.draw_batch(pairs, 64, seed=0)
    assert images.shape == (64, 32, 32, 1)
    assert set(labels) == set(range(10))  # The reconstructions figure shows all 64.
    assert len(set(labels[:8])) >= 5  # The interpolations' 8: no single class.
    # The draw's order, not the file's: any leading part is a uniform draw.
    ids = data.subsets.draw_indices(10_000, 64, 0)
    assert list(ids) != sorted(ids)
    binary = data.load_split("binarized_mnist", "test", data_dir=data_dir)
    head = next(iter(binary.batch(64))).numpy()
    drawn = data.draw_batch(binary, 64, seed=0)
    assert not any(np.array_equal(drawn[0], image) for image in head)


class _LinearGaussian:
    """A VAE whose log p(x) is known exactly: p(z) = N(0, I), p(x|z) =
    N(W z + b, s^2 I), so p(x) = N(b, W W^T + s^2 I); q(z|x) a Gaussian that
    is not the posterior. It answers what models.bounds.iwae_bounds asks, for
    "images" of shape (B, 1, 1, D)."""

    def __init__(self, rng, data_size=5, latent_size=3):
        # Orthogonal rows: the posterior's covariance is diagonal.
        rows = np.linalg.qr(rng.normal(size=(data_size, latent_size)))[0].T
        self.weights = (rows * rng.uniform(1.0, 3.0, size=(latent_size, 1))).astype(np.float32)
        self.bias = rng.normal(size=data_size).astype(np.float32)
        self.noise = 0.7
        self.config = dataclasses.replace(configs.ModelConfig(), latent_size=latent_size)
        self.prior = tfd.Independent(tfd.Normal(tf.zeros(latent_size), 1.0), 1)
        self.likelihood = self

    conventions = ("gaussian",)

    def check_images(self, images):
        return tf.convert_to_tensor(images, tf.float32)

    def posterior_of_checked(self, images):
        # The exact posterior's mean, its scale diagonal and 1.5 times too wide.
        latent_size = len(self.weights)
        precision = np.eye(latent_size) + self.weights @ self.weights.T / self.noise**2
        covariance = np.linalg.inv(precision).astype(np.float32)
        flat = images[:, 0, 0, :]
        mean = tf.matmul(flat - self.bias, self.weights.T @ covariance) / self.noise**2
        scale = 1.5 * np.sqrt(np.diag(covariance))
        return tfd.Independent(tfd.Normal(mean, scale * tf.ones_like(mean)), 1)

    def decode_cells_per_example(self, z, seeds):
        del seeds
        return (tf.matmul(z, self.weights) + self.bias)[:, None, None, :]

    def log_probs(self, means, images):
        return {"gaussian": tfd.Independent(tfd.Normal(means, self.noise), 3).log_prob(images)}

    def exact_log_p(self, images):
        covariance = self.weights.T @ self.weights + self.noise**2 * np.eye(len(self.bias))
        normal = tfd.MultivariateNormalTriL(
            self.bias.astype(np.float64), np.linalg.cholesky(covariance)
        )
        return normal.log_prob(images[:, 0, 0, :].astype(np.float64))


def test_the_iwae_estimate_converges_to_an_exactly_known_log_p(rng):
    model = _LinearGaussian(rng)
    images = (rng.normal(size=(6, 5)).astype(np.float32) * 2 + model.bias)[:, None, None, :]
    exact = model.exact_log_p(images).numpy()

    @tf.function  # As evaluation runs it (eagerly, each sample's seeding costs seconds).
    def iwae(images, k, chunk_size):
        return bounds.iwae_bounds(model, images, k, seed=0, chunk_size=chunk_size)["gaussian"]

    one = iwae(images, 1, 1).numpy()
    many = iwae(images, 5000, 1000)
    # k = 1 is the ELBO of one sample; averaged over 200 independent draws (200
    # ids for each image) it lies below log p(x).
    draws = iwae(np.tile(images, [200, 1, 1, 1]), 1, 1)
    elbos = np.mean(np.reshape(draws, [200, len(images)]), axis=0)
    assert (elbos < exact - 0.05).all() and np.isfinite(one).all()
    np.testing.assert_allclose(many.numpy(), exact, atol=0.05)


def test_the_estimate_does_not_depend_on_batch_or_chunk_size(data_dir):
    # A non-doubling model with stochastic updates and a drawn step count:
    # each image's bound comes from the seed and its index alone.
    preset = presets.get("test_mnist_damage")
    model = build_model(preset.model)
    kernel = model.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [4, 2]) * 0.05)
    images, _ = data.draw(likelihood.split_images(preset, data_dir=data_dir), 10, seed=0)
    reports = [
        likelihood.log_likelihood(
            model, images, 784, 12, batch_size=batch, chunk_size=chunk, progress=False
        )
        for batch, chunk in ((3, 5), (10, 12), (4, 1))
    ]
    for other in reports[1:]:
        np.testing.assert_allclose(
            other["per_image"]["log_likelihood_nats"],
            reports[0]["per_image"]["log_likelihood_nats"],
            rtol=1e-5,
        )
        assert other["per_image"]["index"] == reports[0]["per_image"]["index"]
    # An image measured alone, given its index in the split, gets the same number.
    ids = tf.constant(reports[0]["per_image"]["index"])
    batch = next(iter(images.batch(10)))[1]
    alone = model.iwae(batch[:2], 12, seed=0, image_ids=ids[:2]).numpy()
    np.testing.assert_allclose(alone, reports[0]["per_image"]["log_likelihood_nats"][:2], rtol=1e-5)


def test_each_grid_runs_its_own_number_of_steps(rng):
    preset = presets.get("test_mnist_damage")
    model = build_model(preset.model)
    kernel = model.update_net.out.kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, [4, 2]) * 0.05)
    decoder = model.decoder
    assert isinstance(decoder, NonDoublingNCA)
    z = tf.constant(rng.normal(size=(3, preset.model.latent_size)), tf.float32)
    cells = decoder.initial_cells(z)
    counts = tf.constant([3, 5, 4])
    seeds = tf.constant([[1, 2], [3, 4], [5, 6]])  # Each grid's own update masks.
    together = decoder(cells, num_steps=counts, seed=seeds)
    for i, count in enumerate(counts.numpy()):
        alone = decoder(cells[i : i + 1], num_steps=int(count), seed=seeds[i : i + 1])
        np.testing.assert_allclose(together[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    # Drawn per importance sample: the counts of many samples cover the range.
    seeds = tf.random.stateless_uniform([200, 2], [1, 2], maxval=2**30, dtype=tf.int32)
    drawn = decoder.draw_num_steps(seeds).numpy()
    assert set(drawn) == set(range(preset.model.min_steps, preset.model.max_steps + 1))


def test_each_paper_number_is_measured_on_the_split_the_authors_measured_it_on():
    # Their doubling CelebA code (641588a, 8d1ee6e) had no test loop: its held-out
    # loader was CelebA's "valid" partition. The rest measured on test splits.
    assert configs.paper_split("celeb_a") == configs.paper_split("celeb_a_beta100")
    assert configs.paper_split("celeb_a") == "validation"
    for name in ("mnist", "mnist_damage", "celeb_a_damage", "noto_emoji", "mnist_cpu"):
        assert configs.paper_split(name) == "test"


def test_validation_never_reads_the_test_split():
    for preset in configs.PRESETS.values():
        spec = data.get_spec(preset.dataset)
        train_split = preset.train.train_split or spec.paper_train_split
        split = data.validation_split_for(spec, train_split)
        assert split != "test" and (split is None or split not in train_split), preset.name
    # The paper trained on binarized MNIST's train+validation: nothing is held
    # out, so there is no validation (and no best checkpoint), as with Noto
    # Emoji's train split; CelebA has its own validation split.
    spec = data.get_spec
    assert data.validation_split_for(spec("binarized_mnist"), "train+validation") is None
    assert data.validation_split_for(spec("binarized_mnist"), "train") == "validation"
    assert data.validation_split_for(spec("noto_emoji"), "train") is None
    assert data.validation_split_for(spec("celeb_a"), "train") == "validation"


def test_a_run_without_held_out_images_says_so_and_keeps_no_best(tmp_path, data_dir, capsys):
    from helpers import quiet_preset

    from vnca_tf.common.console import Console
    from vnca_tf.training.loop import Trainer
    from vnca_tf.training.run_folder import RunFolderError, checkpoint_paths, save_config

    preset = quiet_preset("test_mnist", train_split="", num_steps=3)
    inputs = TrainingInputs(
        preset, configs.RunConfig(data_dir=data_dir), None, Console(1, enabled=False)
    )
    assert not inputs.validates and inputs.validation_batches() == []
    trainer = Trainer(preset, str(tmp_path), run=configs.RunConfig(data_dir=data_dir))
    trainer.train(3)
    out = capsys.readouterr().out
    assert (
        "Validation: none: training reads binarized_mnist train+validation, which leaves no "
        "held-out validation split, and the test split never chooses a checkpoint; no best "
        "checkpoint is kept"
    ) in out
    assert "validation loss" not in out and "step 3: images for TensorBoard" in out
    save_config(str(tmp_path), preset, {"validation": inputs.describe_validation()})
    with pytest.raises(RunFolderError, match="has no best checkpoint: it has no validation"):
        checkpoint_paths(str(tmp_path), "best")
    # TensorBoard's reconstructions show a seeded draw of training images.
    pictures = inputs.picture_images()
    assert pictures.shape == (8, 32, 32, 1)
    np.testing.assert_array_equal(pictures, inputs.picture_images())
