"""Representation similarity: linear CKA, SVCCA, and per layer of a
meta-learner before and after its inner loop (Raghu et al.'s Figure 2)."""

import numpy as np

from keras_meta.analysis.single_tasks import (
    probe_model,
    single_tasks,
    weighted_layers,
)


def _as_matrix(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [examples, features], got shape {x.shape}."
        )
    return x


def _check_pair(x, y):
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if len(x) != len(y):
        raise ValueError(
            "x and y must hold the same examples: got "
            f"{len(x)} and {len(y)} rows."
        )
    if len(x) < 2:
        raise ValueError("Similarity needs at least 2 examples.")
    return x - x.mean(axis=0), y - y.mean(axis=0)


def linear_cka(x, y):
    """Linear centred kernel alignment of two representations.

    `||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)` on column-centred `x
    [n, p]` and `y [n, q]`: 1 for representations equal up to an orthogonal
    transform and isotropic scaling, near 0 for unrelated ones. Computed
    through the n x n Gram matrices when features outnumber examples.
    """
    x, y = _check_pair(x, y)
    if x.shape[1] + y.shape[1] > 2 * len(x):
        gram_x, gram_y = x @ x.T, y @ y.T
        cross = np.sum(gram_x * gram_y)
        norms = np.linalg.norm(gram_x) * np.linalg.norm(gram_y)
    else:
        cross = np.linalg.norm(y.T @ x) ** 2
        norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def _top_directions(x, keep):
    """`x` projected on the fewest singular directions that explain the
    fraction `keep` of its variance (the SV step of SVCCA)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    energy = np.cumsum(s**2) / max(np.sum(s**2), 1e-300)
    k = int(np.searchsorted(energy, keep) + 1)
    return u[:, :k] * s[:k]


def svcca(x, y, keep=0.99):
    """Mean canonical correlation after SVD reduction (Raghu et al. 2017).

    Each representation is reduced to the singular directions that explain
    `keep` of its variance; the result is the mean of the canonical
    correlations between the two reduced spaces, in [0, 1]. Needs more
    examples than kept directions to be meaningful.
    """
    x, y = _check_pair(x, y)
    x, y = _top_directions(x, keep), _top_directions(y, keep)
    qx, _ = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    correlations = np.linalg.svd(qx.T @ qy, compute_uv=False)
    correlations = np.clip(correlations, 0.0, 1.0)
    return float(np.mean(correlations)) if correlations.size else 0.0


def _activations(model, probe, indices, weights, state, x):
    trainable, non_trainable = indices
    outputs, _ = probe.stateless_call(
        [weights[i] for i in trainable],
        [state["learner"][i] for i in non_trainable],
        x,
        training=True,
    )
    return [np.asarray(o) for o in outputs]


def _svcca_view(activation):
    """Conv maps `[n, h, w, c]` as `[n*h*w, c]` (positions as examples, as
    Raghu et al. do); dense activations as they are."""
    if activation.ndim > 2:
        return activation.reshape(-1, activation.shape[-1])
    return activation


def representation_similarity(
    model, episodes, num_tasks=100, layers=None, steps=None
):
    """Per-layer similarity of query activations before and after adaptation.

    For each task, the learner's activations on the query images are taken
    with the meta-learned initialisation and with the weights after the inner
    loop (`steps`, default `eval_inner_steps`); linear CKA (activations
    flattened per image) and SVCCA (conv positions as examples) compare
    them. Similarity near 1 means the inner loop left that layer's
    representation alone: feature reuse.

    Returns:
        A list of dicts, one per layer: `layer`, `cka`, `cca` (means over
        tasks) and `cka_std`, `cca_std`.
    """
    learner = model.learner
    layers = layers or weighted_layers(learner)
    probe, trainable, non_trainable = probe_model(learner, layers)
    indices = (trainable, non_trainable)
    weights, state = model.weights_and_state()
    steps = model.eval_inner_steps if steps is None else steps
    cka, cca = [], []
    for support_x, support_y, query_x, _ in single_tasks(episodes, num_tasks):
        adapted = model.adapt(support_x, support_y, steps=steps)
        before = _activations(model, probe, indices, weights, state, query_x)
        after = _activations(model, probe, indices, adapted, state, query_x)
        cka.append(
            [
                linear_cka(b.reshape(len(b), -1), a.reshape(len(a), -1))
                for b, a in zip(before, after)
            ]
        )
        cca.append(
            [
                svcca(_svcca_view(b), _svcca_view(a))
                for b, a in zip(before, after)
            ]
        )
    cka, cca = np.asarray(cka), np.asarray(cca)
    return [
        {
            "layer": layer.name,
            "cka": float(cka[:, i].mean()),
            "cka_std": float(cka[:, i].std()),
            "cca": float(cca[:, i].mean()),
            "cca_std": float(cca[:, i].std()),
        }
        for i, layer in enumerate(layers)
    ]
