"""How well a non-doubling VNCA regrows after damage."""

import numpy as np
import tensorflow as tf

from vnca_tf.models.interface import GenerativeModel


def healing(model: GenerativeModel, num_samples: int = 100, seed: int = 0) -> dict:
    """How well a non-doubling VNCA regrows: for ``num_samples`` latents from the
    prior, the mean absolute difference of its mean image to the undamaged one
    right after a square of half the width is zeroed, and max_steps steps later
    (model.damage_recovery); a trained model brings the second well below the
    first."""
    z = tf.random.stateless_normal([num_samples, model.config.latent_size], [seed, 1])
    grown, damaged, recovered = (np.asarray(x) for x in model.damage_recovery(z, seed=seed))
    damaged_error = float(np.abs(damaged - grown).mean())
    recovered_error = float(np.abs(recovered - grown).mean())
    return {
        "num_samples": num_samples,
        "damaged_error": damaged_error,
        "recovered_error": recovered_error,
        "recovered_over_damaged": recovered_error / damaged_error,
    }
