"""Exact discrete Gaussian sampling from a cryptographically secure generator.

Distributed DP adds its noise on the integers SecAgg+ sums: each client adds an integer drawn
from the discrete Gaussian N_Z(0, sigma^2) to every coordinate of its quantized update (in
units of the SecAgg+ quantization step). The sampler is the exact algorithm of Canonne,
Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020,
Algorithm 1 and 3): rational arithmetic only, no floating point, and every random bit from
``secrets.SystemRandom`` (the operating system's CSPRNG), never from a seeded generator.
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from math import isqrt

import numpy as np

_RNG = secrets.SystemRandom()


def _bernoulli(p: Fraction) -> bool:
    """Return True with probability ``p`` (0 <= p <= 1)."""
    return _RNG.randrange(p.denominator) < p.numerator


def _bernoulli_exp1(gamma: Fraction) -> bool:
    """Return True with probability exp(-gamma), 0 <= gamma <= 1."""
    k = 1
    while _bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(gamma: Fraction) -> bool:
    """Return True with probability exp(-gamma), gamma >= 0."""
    while gamma > 1:
        gamma -= 1
        if not _bernoulli_exp1(Fraction(1)):
            return False
    return _bernoulli_exp1(gamma)


def _geometric_exp_slow(gamma: Fraction) -> int:
    """Return k >= 0 with probability proportional to exp(-gamma k)."""
    k = 0
    while _bernoulli_exp(gamma):
        k += 1
    return k


def _geometric_exp_fast(gamma: Fraction) -> int:
    """Return k >= 0 with probability proportional to exp(-gamma k) (gamma = s / t)."""
    if gamma == 0:
        return 0
    s, t = gamma.numerator, gamma.denominator
    while True:
        u = _RNG.randrange(t)
        if _bernoulli_exp(Fraction(u, t)):
            break
    return (_geometric_exp_slow(Fraction(1)) * t + u) // s


def _discrete_laplace(scale: int) -> int:
    """Return x with probability proportional to exp(-|x| / scale)."""
    while True:
        negative = _bernoulli(Fraction(1, 2))
        magnitude = _geometric_exp_fast(Fraction(1, scale))
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def discrete_gaussian(sigma2: Fraction) -> int:
    """Return one exact sample of the discrete Gaussian N_Z(0, sigma2) (sigma2 > 0, rational)."""
    t = isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = _discrete_laplace(t)
        bias = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bernoulli_exp(bias):
            return y


def discrete_gaussian_array(sigma2: Fraction, shape: tuple[int, ...]) -> np.ndarray:
    """Return an int64 array of independent N_Z(0, sigma2) samples."""
    size = int(np.prod(shape)) if shape else 1
    return np.array([discrete_gaussian(sigma2) for _ in range(size)], dtype=np.int64).reshape(shape)


def sum_tau(sigma2: float, clients: int) -> float:
    """Return tau of Kairouz, Liu and Steinke (ICML 2021, Thm. 1) for a sum of ``clients`` N_Z(0, sigma2).

    The sum is within tau per coordinate (in Renyi divergence terms) of a discrete Gaussian of
    variance ``clients * sigma2``; for the variances used here (about 1e9 quantization steps
    squared) tau underflows to 0.
    """
    import math

    return 10 * sum(math.exp(-2 * math.pi**2 * sigma2 * k / (k + 1)) for k in range(1, clients))
