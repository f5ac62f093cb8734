"""What the inner loop needs: freezing layers (Raghu et al.'s Table 1),
adapting the head alone, and no inner loop at all (the NIL head, Table 4)."""

import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.analysis.single_tasks import single_tasks, weighted_layers
from keras_meta.engine import Task
from keras_meta.evaluation import ci95
from keras_meta.learner_parts import LearnerSplit, put, take
from keras_meta.protonet import masked_logits


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


def has_prototype_head(model):
    """ProtoNet and Proto-MAML: an embedding learner whose head is the
    task's prototype classifier, not a layer."""
    return hasattr(model, "fine_tuned_head")


def _subset_scores(model, tasks, adapt, steps, learning_rate, head=True):
    """Per-task query accuracy when the inner loop adapts only the learner
    variables at positions `adapt` (SGD, `steps` steps of `learning_rate`);
    for a prototype-head model, also its prototype head if `head`."""
    weights, state = model.weights_and_state()
    prototypes = has_prototype_head(model)
    steps = steps if adapt or (prototypes and head) else 0

    def prototype_logits(task):
        moved, kernel, bias, present, task_state = model.fine_tuned_head(
            weights,
            state,
            task,
            steps,
            adapted=adapt,
            learning_rate=learning_rate,
        )
        query, _ = model.embed(moved, task_state, task.query_x)
        return masked_logits(query, kernel, bias, present)

    def classifier_logits(task):
        support_loss = model.support_loss(task)

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
            put(weights, adapt, subset), state, task.query_x
        )
        return logits

    logits_of = prototype_logits if prototypes else classifier_logits

    @tf.function(reduce_retracing=True)
    def score(support_x, support_y, query_x, query_y):
        logits = logits_of(Task(support_x, support_y, query_x))
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
    For ProtoNet and Proto-MAML the head is the task's prototype classifier,
    adapted in every row but the last (`"prototype head"` adapts it alone).

    Returns:
        A list of dicts `{"adapted_from": layer name or "none",
        "frozen": number of frozen weighted layers, "accuracy": mean,
        "ci95": 95% interval}`.
    """
    layers = weighted_layers(model.learner)
    layer_of = _layer_of_variable(model.learner, layers)
    names = [layer.name for layer in layers]
    if has_prototype_head(model):
        names.append("prototype head")
    steps = model.eval_inner_steps if steps is None else steps
    rate = model.inner_lr if learning_rate is None else learning_rate
    tasks = list(single_tasks(episodes, num_tasks))
    rows = []
    for first in range(len(names) + 1):
        adapt = [i for i, layer in enumerate(layer_of) if layer >= first]
        head = first < len(names)
        scores = _subset_scores(model, tasks, adapt, steps, rate, head)
        rows.append(
            {
                "adapted_from": names[first] if head else "none",
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
    weighted layer; ProtoNet's and Proto-MAML's prototype head), for every
    pair of `steps` and `learning_rates` (None: the model's own
    `eval_inner_steps` / `inner_lr`).

    Returns:
        A list of dicts `{"steps", "learning_rate", "accuracy", "ci95"}`.
    """
    layers = weighted_layers(model.learner)
    layer_of = _layer_of_variable(model.learner, layers)
    head = [i for i, layer in enumerate(layer_of) if layer == len(layers) - 1]
    if has_prototype_head(model):
        head = []  # the prototype head alone
    tasks = list(single_tasks(episodes, num_tasks))
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

    Support and query images go through the body (all layers but the last;
    an embedding learner's whole, for ProtoNet and Proto-MAML); each query
    is assigned the class whose support features have the highest mean
    cosine similarity to its own.

    Returns:
        `{"accuracy": mean, "ci95": 95% interval, "num_tasks": n,
        "task_accuracies": [n]}` (each task's, in the episodes' order).
    """
    weights, state = model.weights_and_state()
    body, body_weights, body_state = model.learner, weights, state["learner"]
    if not has_prototype_head(model):
        split = LearnerSplit(model.learner, 1)
        body = split.body
        body_weights = take(weights, split.body_trainable)
        body_state = take(body_state, split.body_non_trainable)

    def features(x):
        out, _ = body.stateless_call(body_weights, body_state, x, training=True)
        out = np.asarray(out).reshape(len(out), -1)
        return out / np.maximum(
            np.linalg.norm(out, axis=1, keepdims=True), 1e-12
        )

    scores = []
    for support_x, support_y, query_x, query_y in single_tasks(
        episodes, num_tasks
    ):
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
        "task_accuracies": [float(v) for v in scores],
    }
