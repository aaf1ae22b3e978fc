"""The two bounds on log p(x) of a VAE (models.vae): the beta-weighted ELBO
that training and validation minimise, and the importance-weighted bound
(IWAE, Burda et al.) that evaluation reports."""

import tensorflow as tf
import tensorflow_probability as tfp

from vnca_tf.models.seeds import as_seed, fold_in_each, for_each_seed

tfd = tfp.distributions


def loss_terms(
    model,
    images,
    noise,
    beta=1.0,
    start_cells=None,
    use_start=None,
    num_steps=None,
    seed=None,
    rows=None,
):
    """``model``'s beta-weighted negative ELBO per image, in nats, for z = mean +
    stddev * ``noise`` under q(z|x): the one loss of training and validation.

    ``noise`` (B, latent_size) is standard normal; ``seed`` draws the
    decoder's randomness (see ``decode_cells``, like ``num_steps`` and
    ``rows``). Where ``use_start`` (B,) is true, an image's cells start
    from ``start_cells`` (pooled states, without their gradient) instead of
    its z (pool training; models that grow cells only).

    Returns a dict of (B,) tensors: ``loss`` = reconstruction + beta * kl,
    ``reconstruction`` = -log p(x|z), ``kl`` = KL(q(z|x) || p(z))
    (analytic), and the decoder's ``final_cells``.
    """
    images = model.check_images(images)
    posterior = model.posterior_of_checked(images)
    z = posterior.mean() + posterior.stddev() * noise
    final_cells = model.decode_cells(z, seed, num_steps, rows, start_cells, use_start)
    reconstruction = -model.likelihood.distribution(final_cells).log_prob(images)
    kl = tfd.kl_divergence(posterior, model.prior)
    return {
        "loss": reconstruction + beta * kl,
        "reconstruction": reconstruction,
        "kl": kl,
        "final_cells": final_cells,
    }


def iwae_bounds(
    model, images, num_samples=128, seed=None, chunk_size: int = 16, image_ids=None
) -> dict:
    """``model``'s importance-weighted bound on log p(x) (Burda et al.), nats per image,
    in each of the likelihood's conventions ({name: (B,)}; the logistic
    mixture's "pixelcnn" and "exact"), from the same importance samples.

    log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), k = num_samples
    (an int, or a scalar tensor, e.g. in a SavedModel signature).

    Every image draws its own randomness from ``seed`` and its id (``image_ids``
    (B,), e.g. its index in its split; default: its position in the batch),
    and every importance sample its own from that: z_i, and the decoder's step
    count and update masks (see ``decode_cells_per_example``). So an image's
    bound depends on the model, the seed, its id and k only, not on the batch
    it is in or on ``chunk_size``, and the bounds of different images are
    independent. The k latents are decoded ``chunk_size`` per image at a time
    (at most k), so memory stays at B * min(chunk_size, k) decodes whatever k is.
    """
    if any(isinstance(n, int) and n < 1 for n in (num_samples, chunk_size)):
        raise ValueError(
            f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}."
        )
    if isinstance(num_samples, int) and isinstance(chunk_size, int):
        chunk_size = min(chunk_size, num_samples)
    else:  # Tensors (a signature's): the chunk still follows k.
        num_samples = tf.convert_to_tensor(num_samples, tf.int32)
        tf.debugging.assert_positive(num_samples, message="k (num_samples) must be >= 1.")
        chunk_size = tf.convert_to_tensor(chunk_size, tf.int32)
        tf.debugging.assert_positive(chunk_size, message="chunk_size must be >= 1.")
        chunk_size = tf.minimum(chunk_size, num_samples)
    images = model.check_images(images)
    posterior = model.posterior_of_checked(images)
    batch = tf.shape(images)[0]
    if image_ids is None:
        image_ids = tf.range(batch)
    image_seeds = fold_in_each(tf.tile(as_seed(seed)[None], [batch, 1]), image_ids)
    noise_seeds = fold_in_each(image_seeds, tf.zeros([batch], tf.int32))
    decode_seeds = fold_in_each(image_seeds, tf.ones([batch], tf.int32))
    latent_size = model.config.latent_size
    noise = for_each_seed(
        lambda own: tf.random.stateless_normal([num_samples, latent_size], own),
        noise_seeds,
        tf.float32,
    )  # (B, k, Z)
    z = posterior.mean() + posterior.stddev() * tf.transpose(noise, [1, 0, 2])  # (k, B, Z)
    samples = tf.range(num_samples)
    sample_seeds = tf.transpose(
        tf.reshape(
            fold_in_each(tf.repeat(decode_seeds, num_samples, axis=0), tf.tile(samples, [batch])),
            [batch, num_samples, 2],
        ),
        [1, 0, 2],
    )  # (k, B, 2): sample i of image b.
    num_chunks = (num_samples + chunk_size - 1) // chunk_size
    padding = [[0, num_chunks * chunk_size - num_samples], [0, 0], [0, 0]]
    padded_z, padded_seeds = tf.pad(z, padding), tf.pad(sample_seeds, padding)
    conventions = model.likelihood.conventions

    def chunk(i, chunks):
        start = i * chunk_size
        log_likelihoods = _log_likelihoods(
            model,
            images,
            padded_z[start : start + chunk_size],
            padded_seeds[start : start + chunk_size],
        )
        return i + 1, chunks.write(i, tf.stack([log_likelihoods[name] for name in conventions]))

    chunks = tf.TensorArray(tf.float32, size=num_chunks)
    _, chunks = tf.while_loop(
        lambda i, c: i < num_chunks, chunk, (0, chunks), maximum_iterations=num_chunks
    )
    # (chunks, conventions, chunk, B) -> (conventions, k, B)
    stacked = tf.transpose(chunks.stack(), [1, 0, 2, 3])
    log_likelihoods = tf.reshape(stacked, [len(conventions), -1, batch])[:, :num_samples]
    log_ratios = model.prior.log_prob(z) - posterior.log_prob(z)
    log_k = tf.math.log(tf.cast(num_samples, tf.float32))
    return {
        name: tf.reduce_logsumexp(log_likelihoods[index] + log_ratios, axis=0) - log_k
        for index, name in enumerate(conventions)
    }


def _log_likelihoods(model, images, z, seeds) -> dict:
    """log p(x|z) in each of the likelihood's conventions, for latents z
    (k, B, Z) with their own decoder seeds (k, B, 2) and images (B, H, W, C):
    {name: (k, B)}."""
    k, batch = tf.shape(z)[0], tf.shape(z)[1]
    flat_images = tf.reshape(
        tf.tile(images[None], [k, 1, 1, 1, 1]), tf.concat([[-1], tf.shape(images)[1:]], 0)
    )
    cells = model.decode_cells_per_example(
        tf.reshape(z, [-1, model.config.latent_size]), tf.reshape(seeds, [-1, 2])
    )
    return {
        name: tf.reshape(log_prob, [k, batch])
        for name, log_prob in model.likelihood.log_probs(cells, flat_images).items()
    }
