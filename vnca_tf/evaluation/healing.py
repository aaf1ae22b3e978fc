"""How well a non-doubling VNCA regrows what was erased, measured on test
images inside the erased region (what the demo page says it shows)."""

import numpy as np

from vnca_tf.models.interface import GenerativeModel


def healing(model: GenerativeModel, images, seed: int = 0) -> dict:
    """How well a non-doubling VNCA regrows: each of ``images`` (a seeded draw
    of test images, data.draw_batch) is encoded to its posterior mean, grown
    for max_steps, a square of half the width is zeroed at a random place and
    max_steps more steps run (model.damage_recovery with ``seed``). Returns the
    mean absolute difference of the mean image to the grown one inside the
    erased square, right after the damage and after the regrowth; a trained
    model brings the second well below the first."""
    z = model.encode_mean(images)
    grown, damaged, recovered = (np.asarray(x) for x in model.damage_recovery(z, seed=seed))
    region = np.asarray(model.damaged_region(len(images), seed=seed))
    cells = region.sum() * grown.shape[-1]

    def error(pictures):
        return float((np.abs(pictures - grown) * region).sum() / cells)

    damaged_error, recovered_error = error(damaged), error(recovered)
    return {
        "num_images": len(images),
        "region": "inside the erased square (half the width), at a random place per image",
        "damaged_error": damaged_error,
        "recovered_error": recovered_error,
        "recovered_over_damaged": recovered_error / damaged_error,
    }
