"""The papers' evaluation protocol: mean over test tasks with a 95% CI."""

import dataclasses
import math

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class FewShotResult:
    """Mean score over `num_tasks` test tasks and its 95% confidence
    interval `1.96 * std / sqrt(num_tasks)`, as Finn et al. report.

    `metric` is `"accuracy"` (a fraction in [0, 1]) for classification and
    `"loss"` (the compiled task loss, e.g. MSE) for regression.
    """

    metric: str
    mean: float
    ci95: float
    std: float
    num_tasks: int
    inner_steps: int
    bn_mode: str

    def describe(self, ways=None, shots=None):
        """One line, e.g. `accuracy 97.9% +- 0.3% (600 tasks, 5-way 1-shot,
        bn=transductive)`."""
        task = f", {ways}-way {shots}-shot" if ways and shots else ""
        where = f"({self.num_tasks} tasks{task}, bn={self.bn_mode})"
        if self.metric == "accuracy":
            return (
                f"accuracy {100 * self.mean:.1f}% +- "
                f"{100 * self.ci95:.1f}% {where}"
            )
        return f"loss {self.mean:.4f} +- {self.ci95:.4f} {where}"

    def as_dict(self):
        return dataclasses.asdict(self)


def ci95(values):
    """The half-width of the 95% interval of the mean of `values`:
    `1.96 * std / sqrt(n)`, as Finn et al. report."""
    values = np.asarray(values, dtype=np.float64)
    return float(1.96 * np.std(values) / math.sqrt(len(values)))


def per_task_scores(model, x, y, steps, bn_mode):
    """Per-task accuracy (classification) or loss (regression), `[T]`."""
    y_pred = model.adapted_predictions(x, steps, bn_mode)
    if model.num_classes is not None:
        labels = tf.cast(y, tf.int64)
        hits = tf.equal(tf.argmax(y_pred, axis=-1), labels)
        return tf.reduce_mean(tf.cast(hits, tf.float32), axis=1)
    return tf.reduce_mean(
        tf.cast(model.loss_values(y, y_pred), tf.float32), axis=1
    )


def _scores_function(model):
    """`per_task_scores`, compiled once per model (steps and batch-norm mode
    are arguments, so a new pair retraces without touching the model)."""
    cache = model.__dict__.setdefault("_few_shot_scores", {})
    if "fn" not in cache:
        cache["fn"] = tf.function(
            lambda x, y, steps, bn_mode: per_task_scores(
                model, x, y, steps, bn_mode
            ),
            reduce_retracing=True,
        )
    return cache["fn"]


def evaluate_few_shot(
    model, episodes, num_tasks=600, inner_steps=None, bn_mode=None
):
    """Scores a meta-learner on `num_tasks` tasks of `episodes`.

    Each task is adapted on its support set (`inner_steps`, default the
    model's `eval_inner_steps`) and scored on its query set.

    Args:
        model: a compiled `keras_meta.MetaLearner`.
        episodes: a dataset of meta-batches, as `keras_meta.data` makes
            (meta-test tasks for the papers' figures); read from its start
            until `num_tasks` tasks are scored.
        num_tasks: number of test tasks (the papers: 600).
        inner_steps: adaptation steps (default `model.eval_inner_steps`).
        bn_mode: `"transductive"` or `"non_transductive"` (default
            `model.bn_mode`).

    Returns:
        A `FewShotResult`.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
    steps = model.eval_inner_steps if inner_steps is None else inner_steps
    bn_mode = bn_mode or model.bn_mode
    scores = _scores_function(model)
    collected, total = [], 0
    for x, y in episodes:
        batch = scores(x, y, steps, bn_mode).numpy()
        collected.append(batch[: num_tasks - total])
        total += len(collected[-1])
        if total >= num_tasks:
            break
    if total < num_tasks:
        raise ValueError(
            f"The episodes ran out after {total} tasks; num_tasks="
            f"{num_tasks} needs an endless (or longer) dataset."
        )
    values = np.concatenate(collected)
    return FewShotResult(
        metric="accuracy" if model.num_classes is not None else "loss",
        mean=float(np.mean(values)),
        ci95=ci95(values),
        std=float(np.std(values)),
        num_tasks=num_tasks,
        inner_steps=steps,
        bn_mode=bn_mode,
    )
