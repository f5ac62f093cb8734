"""The update directions of pre-training, first-order MAML, MAML and
Reptile at one initialisation, compared task by task."""

import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.analysis.single_tasks import single_tasks
from keras_meta.engine import Task
from keras_meta.evaluation import ci95

DIRECTIONS = ("pretrain", "first_order_maml", "maml", "reptile")


def directions_function(model, steps, learning_rate):
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
    directions = directions_function(model, steps, rate)
    vectors = {name: [] for name in DIRECTIONS}
    for task in single_tasks(episodes, num_tasks):
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
