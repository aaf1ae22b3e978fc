"""Bits per dimension: the one conversion from nats that every report uses.

bits/dim = -log p(x) / (H * W * C * ln 2), the paper's section 3 convention:
the negative log-likelihood (a loss, a code length: a positive number of nats
per image) in bits per dimension, also positive.
"""

import math


def bits_per_dim(negative_log_likelihood_nats, num_dimensions: int):
    """-log p(x) (or a negative ELBO, a loss) in nats per image -> bits per
    dimension, both positive (works on arrays too)."""
    return negative_log_likelihood_nats / (num_dimensions * math.log(2.0))
