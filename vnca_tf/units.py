"""Conversions between log-likelihoods in nats and bits per dimension.

bits/dim = -log p(x) / (H * W * C * ln 2), the paper's section 3 convention: a
log-likelihood in nats (negative) becomes a positive number of bits per dimension.
"""

import math


def nats_to_bits_per_dim(log_likelihood_nats, num_dimensions: int):
    """log p(x) in nats per image -> bits per dimension (works on arrays too)."""
    return -log_likelihood_nats / (num_dimensions * math.log(2.0))


def bits_per_dim_to_nats(bits_per_dim, num_dimensions: int):
    """Bits per dimension -> log p(x) in nats per image (the inverse)."""
    return -bits_per_dim * num_dimensions * math.log(2.0)
