"""Independent numpy references the tests check keras_meta against."""

import numpy as np


def linear_regression_tasks(rng, tasks=3, shots=6, queries=5, dim=4, noise=0.1):
    """Episodes of noisy linear regression tasks `y = x . w_t` (float64):
    `(x, query_y)`, support labels with Gaussian noise of std `noise`."""
    support_x = rng.normal(size=(tasks, shots, dim))
    query_x = rng.normal(size=(tasks, queries, dim))
    true_w = rng.normal(size=(tasks, dim, 1))
    x = {
        "support_x": support_x,
        "support_y": support_x @ true_w
        + noise * rng.normal(size=(tasks, shots, 1)),
        "query_x": query_x,
    }
    return x, query_x @ true_w


def finite_differences(fn, arrays, eps=1e-6):
    """Central differences of the scalar `fn(arrays)` for every entry."""
    grads = []
    for i, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            up = [a.copy() for a in arrays]
            down = [a.copy() for a in arrays]
            up[i][index] += eps
            down[i][index] -= eps
            grad[index] = (fn(up) - fn(down)) / (2 * eps)
        grads.append(grad)
    return grads


def batch_norm(x, gamma, beta, epsilon):
    """Training-mode batch norm over every axis but the last, and its
    backward pass: `(y, backward)`, `backward(dy) -> (d_x, d_gamma)`, by
    the textbook formulas."""
    axes = tuple(range(x.ndim - 1))
    rstd = 1 / np.sqrt(x.var(axes) + epsilon)
    xhat = (x - x.mean(axes)) * rstd

    def backward(dy):
        d_xhat = dy * gamma
        d_x = rstd * (
            d_xhat - d_xhat.mean(axes) - xhat * (d_xhat * xhat).mean(axes)
        )
        return d_x, (dy * xhat).sum(axes)

    return gamma * xhat + beta, backward


def cross_entropy_logit_gradient(logits, labels):
    """Gradient of mean softmax cross-entropy in the logits `[n, classes]`."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1
    return probs / len(labels)
