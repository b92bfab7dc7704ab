"""Link functions written once: margins to probabilities, and the stable log-sum-exp."""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Return 1 / (1 + exp(-z)), written with tanh so it stays finite for any z."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def log_sum_exp(z: np.ndarray) -> np.ndarray:
    """Return log(sum(exp(z), axis=1)) per row without overflow."""
    top = z.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(z - top).sum(axis=1))


def softmax(z: np.ndarray) -> np.ndarray:
    """Return the row-wise softmax of margins (rows x classes)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def binary_columns(p1: np.ndarray) -> np.ndarray:
    """Return (rows x 2) probabilities [1 - p, p] from the positive class's probability."""
    p1 = np.asarray(p1, dtype=np.float64).reshape(-1)
    return np.column_stack([1.0 - p1, p1])


def margins_to_proba(z: np.ndarray, n_classes: int) -> np.ndarray:
    """Return class probabilities from margins: one column (binary, sigmoid) or one per class (softmax)."""
    z = np.asarray(z, dtype=np.float64)
    if n_classes == 2:
        return binary_columns(sigmoid(z.reshape(len(z), -1)[:, 0] if z.ndim > 1 else z))
    return softmax(z.reshape(len(z), n_classes))
