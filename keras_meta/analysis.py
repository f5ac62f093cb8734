"""Rapid learning or feature reuse? Tools to ask a trained meta-learner.

Raghu et al. (ICLR 2020) found that MAML works mostly by feature reuse: the
inner loop barely changes the body's representations and mostly adapts the
head. These functions measure that for any keras-meta model:

- `linear_cka(x, y)` (Kornblith et al. 2019) and `svcca(x, y)` (Raghu et
  al. 2017): similarity in [0, 1] of two representations `[examples,
  features]` of the same examples.
- `representation_similarity(model, episodes, num_tasks)`: per layer, the
  similarity of the learner's activations on query images before and after
  the inner loop.
- `freezing_ablation(model, episodes, num_tasks)`: test accuracy when the
  inner loop updates only layers i..L (the ANIL paper's Table 1).
- `nil_accuracy(model, episodes, num_tasks)`: no inner loop at all; queries
  are classified by cosine similarity to the support features of each class
  (the paper's NIL head, Table 4).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.engine import Task
from keras_meta.evaluation import ci95
from keras_meta.learner_parts import LearnerSplit, put, take, variable_indices


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


# -- probing a meta-learner -----------------------------------------------


def _weighted_layers(learner):
    return [
        layer
        for layer in learner.layers
        if layer.trainable_weights
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]


def _probe(learner, layers):
    """A model from the learner's input to the outputs of `layers`, and
    where its variables sit in the learner's variable lists."""
    probe = keras.Model(learner.inputs, [layer.output for layer in layers])
    return (
        probe,
        variable_indices(
            probe.trainable_variables, learner.trainable_variables
        ),
        variable_indices(
            probe.non_trainable_variables, learner.non_trainable_variables
        ),
    )


def _tasks(episodes, num_tasks):
    """Yields `(support_x, support_y, query_x, query_y)` of single tasks."""
    count = 0
    for x, y in episodes:
        for t in range(int(tf.shape(y)[0])):
            yield (x["support_x"][t], x["support_y"][t], x["query_x"][t], y[t])
            count += 1
            if count >= num_tasks:
                return
    if count < num_tasks:
        raise ValueError(
            f"The episodes ran out after {count} tasks; num_tasks="
            f"{num_tasks} needs a longer dataset."
        )


def _activations(model, probe, indices, weights, state, x):
    trainable, non_trainable = indices
    outputs, _ = probe.stateless_call(
        [weights[i] for i in trainable],
        [state[i] for i in non_trainable],
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
    layers = layers or _weighted_layers(learner)
    probe, trainable, non_trainable = _probe(learner, layers)
    indices = (trainable, non_trainable)
    weights, state = model.weights_and_state()
    steps = model.eval_inner_steps if steps is None else steps
    cka, cca = [], []
    for support_x, support_y, query_x, _ in _tasks(episodes, num_tasks):
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


def _accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def _layer_of_variable(learner, layers):
    """For each trainable variable of `learner`, the index in `layers` of
    the weighted layer it belongs to (batch-norm follows the layer it
    normalises)."""
    position = {id(v): i for i, v in enumerate(learner.trainable_variables)}
    layer_of, current = {}, 0
    for layer in learner.layers:
        if layer in layers:
            current = layers.index(layer)
        for v in layer.trainable_weights:
            layer_of[position[id(v)]] = current
    return [layer_of[i] for i in range(len(position))]


def _subset_scores(model, tasks, adapt, steps, learning_rate):
    """Per-task query accuracy when the inner loop adapts only the learner
    variables at positions `adapt` (SGD, `steps` steps of `learning_rate`)."""
    weights, state = model.weights_and_state()
    steps = steps if adapt else 0

    @tf.function(reduce_retracing=True)
    def score(support_x, support_y, query_x, query_y):
        support_loss = model.support_loss(Task(support_x, support_y, query_x))

        def subset_loss(subset, task_state, step):
            return support_loss(put(weights, adapt, subset), task_state, step)

        subset, _ = inner_loop.gradient_descent(
            subset_loss,
            take(weights, adapt),
            state,
            steps,
            learning_rate,
            differentiable=False,
        )
        logits, _, _ = model.forward(
            put(weights, adapt, subset), state, query_x
        )
        hits = tf.equal(tf.argmax(logits, axis=-1), tf.cast(query_y, tf.int64))
        return tf.reduce_mean(tf.cast(hits, tf.float32))

    return np.asarray([float(score(*task)) for task in tasks])


def freezing_ablation(
    model, episodes, num_tasks=100, steps=None, learning_rate=None
):
    """Test accuracy when the inner loop adapts only layers i..L.

    Row i freezes every weighted layer before the i-th (counting from 0)
    at the meta-learned initialisation and adapts the rest with plain SGD
    (`steps`, default `eval_inner_steps`; `learning_rate`, default
    `inner_lr`); the last row but one adapts only the head, ANIL-style, and
    the last (`"none"`) adapts nothing. Batch-norm layers follow the layer
    they normalise. Raghu et al.'s Table 1 freezes layers 1..i the same way.

    Returns:
        A list of dicts `{"adapted_from": layer name or "none",
        "frozen": number of frozen weighted layers, "accuracy": mean,
        "ci95": 95% interval}`.
    """
    layers = _weighted_layers(model.learner)
    layer_of = _layer_of_variable(model.learner, layers)
    steps = model.eval_inner_steps if steps is None else steps
    rate = model.inner_lr if learning_rate is None else learning_rate
    tasks = list(_tasks(episodes, num_tasks))
    rows = []
    for first in range(len(layers) + 1):
        adapt = [i for i, layer in enumerate(layer_of) if layer >= first]
        scores = _subset_scores(model, tasks, adapt, steps, rate)
        rows.append(
            {
                "adapted_from": (
                    layers[first].name if first < len(layers) else "none"
                ),
                "frozen": first,
                "accuracy": float(scores.mean()),
                "ci95": ci95(scores),
            }
        )
    return rows


def head_only_accuracy(
    model, episodes, num_tasks=100, steps=(None,), learning_rates=(None,)
):
    """Test accuracy when the inner loop adapts only the head (the last
    weighted layer), for every pair of `steps` and `learning_rates` (None:
    the model's own `eval_inner_steps` / `inner_lr`).

    Returns:
        A list of dicts `{"steps", "learning_rate", "accuracy", "ci95"}`.
    """
    layers = _weighted_layers(model.learner)
    layer_of = _layer_of_variable(model.learner, layers)
    head = [i for i, layer in enumerate(layer_of) if layer == len(layers) - 1]
    tasks = list(_tasks(episodes, num_tasks))
    rows = []
    for k in steps:
        k = model.eval_inner_steps if k is None else k
        for rate in learning_rates:
            rate = model.inner_lr if rate is None else rate
            scores = _subset_scores(model, tasks, head, k, rate)
            rows.append(
                {
                    "steps": k,
                    "learning_rate": rate,
                    "accuracy": float(scores.mean()),
                    "ci95": ci95(scores),
                }
            )
    return rows


def nil_accuracy(model, episodes, num_tasks=100):
    """The NIL head: no inner loop at test time.

    Support and query images go through the body (all layers but the last);
    each query is assigned the class whose support features have the highest
    mean cosine similarity to its own.

    Returns:
        `{"accuracy": mean, "ci95": 95% interval, "num_tasks": n}`.
    """
    split = LearnerSplit(model.learner, 1)
    weights, state = model.weights_and_state()
    body_weights = take(weights, split.body_trainable)
    body_state = take(state, split.body_non_trainable)

    def features(x):
        out, _ = split.body.stateless_call(
            body_weights, body_state, x, training=True
        )
        out = np.asarray(out).reshape(len(out), -1)
        return out / np.maximum(
            np.linalg.norm(out, axis=1, keepdims=True), 1e-12
        )

    scores = []
    for support_x, support_y, query_x, query_y in _tasks(episodes, num_tasks):
        support, query = features(support_x), features(query_x)
        labels = np.asarray(support_y)
        classes = np.unique(labels)
        similarity = query @ support.T
        per_class = np.stack(
            [similarity[:, labels == c].mean(axis=1) for c in classes],
            axis=1,
        )
        predicted = classes[np.argmax(per_class, axis=1)]
        scores.append(float(np.mean(predicted == np.asarray(query_y))))
    scores = np.asarray(scores)
    return {
        "accuracy": float(scores.mean()),
        "ci95": ci95(scores),
        "num_tasks": int(len(scores)),
    }


DIRECTIONS = ("pretrain", "first_order_maml", "maml", "reptile")


def _directions_function(model, steps, learning_rate):
    """Compiled `fn(support_x, support_y, query_x, query_y)` -> the four
    update directions of one task at the current initialisation, each a
    list shaped like the learner's weights."""
    weights, state = model.weights_and_state()

    @tf.function(reduce_retracing=True)
    def directions(support_x, support_y, query_x, query_y):
        task = Task(support_x, support_y, query_x, query_y)
        support_loss = model.support_loss(task)

        def query_loss(fast, task_state, step):
            y_pred, task_state, losses = model.forward(
                fast, task_state, query_x
            )
            return model.query_loss(task, y_pred, losses), task_state

        pretrain, _ = inner_loop.gradients(support_loss, weights, state)
        init = [tf.identity(w) for w in weights]
        with tf.GradientTape() as tape:
            tape.watch(init)
            adapted, adapted_state = inner_loop.gradient_descent(
                support_loss, init, state, steps, learning_rate, True
            )
            loss, _ = query_loss(adapted, adapted_state, steps)
        maml = inner_loop.zeros_for_none(tape.gradient(loss, init), init)
        adapted = [tf.stop_gradient(w) for w in adapted]
        first_order, _ = inner_loop.gradients(
            query_loss, adapted, adapted_state
        )
        reptile = [w - a for w, a in zip(weights, adapted)]
        return pretrain, first_order, maml, reptile

    return directions


def update_directions(
    model, episodes, num_tasks=100, steps=2, learning_rate=None
):
    """How the update directions of the algorithms differ, per task.

    At the model's current initialisation phi, for each task: the
    pre-training direction (the gradient of the support loss at phi, g1),
    the first-order MAML direction (the query-loss gradient at the weights W
    after `steps` SGD steps of `learning_rate`, default `inner_lr`), the
    second-order MAML meta-gradient (the same, carried back through the
    steps) and the Reptile direction `phi - W` (`a * (g1 + g2)` for two
    steps). Directions are flattened over all of the learner's weights.

    Returns:
        `{"steps", "learning_rate", "num_tasks", "norms": {name: {"mean",
        "ci95"}}, "cosines": {"a|b": {"mean", "ci95"}}}` over the tasks,
        names as in `DIRECTIONS`.
    """
    rate = model.inner_lr if learning_rate is None else learning_rate
    directions = _directions_function(model, steps, rate)
    vectors = {name: [] for name in DIRECTIONS}
    for task in _tasks(episodes, num_tasks):
        for name, direction in zip(DIRECTIONS, directions(*task)):
            vectors[name].append(
                np.concatenate([np.ravel(np.asarray(d)) for d in direction])
            )
    vectors = {k: np.asarray(v, np.float64) for k, v in vectors.items()}

    def summary(values):
        return {"mean": float(np.mean(values)), "ci95": ci95(values)}

    norms = {k: summary(np.linalg.norm(v, axis=1)) for k, v in vectors.items()}
    cosines = {}
    for i, a in enumerate(DIRECTIONS):
        for b in DIRECTIONS[i + 1 :]:
            u, v = vectors[a], vectors[b]
            denominator = np.maximum(
                np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-300
            )
            cosines[f"{a}|{b}"] = summary(np.sum(u * v, axis=1) / denominator)
    return {
        "steps": steps,
        "learning_rate": rate,
        "num_tasks": len(vectors["maml"]),
        "norms": norms,
        "cosines": cosines,
    }
