"""Few-shot testing: mean over test tasks with a 95% CI, per protocol."""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from keras_meta import protocols


@dataclasses.dataclass(frozen=True)
class FewShotResult:
    """Mean score over `num_tasks` test tasks and its 95% confidence
    interval `1.96 * std / sqrt(num_tasks)`, as Finn et al. report.

    `metric` is `"accuracy"` (a fraction in [0, 1]) for classification and
    `"loss"` (the compiled task loss, e.g. MSE) for regression.
    `task_scores` holds each task's score, `[num_tasks]`, in the order the
    episodes gave the tasks, so that two models tested on the same episodes
    can be compared task by task (`keras_meta.statistics`). `protocol` and
    `queries` (per class) say how the tasks were drawn, when known.
    """

    metric: str
    mean: float
    ci95: float
    std: float
    num_tasks: int
    inner_steps: int
    bn_mode: str
    protocol: str | None = None
    queries: int | None = None
    task_scores: tuple = dataclasses.field(
        default=(), repr=False, compare=False
    )

    def describe(self, ways=None, shots=None):
        """One line, e.g. `accuracy 97.9% +- 0.5% (600 tasks, 5-way 1-shot,
        1 query per class, bn=transductive, protocol maml)`."""
        task = f", {ways}-way {shots}-shot" if ways and shots else ""
        if self.queries is not None and ways:
            plural = "y" if self.queries == 1 else "ies"
            task += f", {self.queries} quer{plural} per class"
        protocol = f", protocol {self.protocol}" if self.protocol else ""
        where = f"({self.num_tasks} tasks{task}, bn={self.bn_mode}{protocol})"
        if self.metric == "accuracy":
            return (
                f"accuracy {100 * self.mean:.1f}% +- "
                f"{100 * self.ci95:.1f}% {where}"
            )
        return f"loss {self.mean:.4f} +- {self.ci95:.4f} {where}"

    def as_dict(self):
        """The summary as a dict, without the per-task scores."""
        summary = dataclasses.asdict(self)
        del summary["task_scores"]
        return summary


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
    are arguments, so a new pair retraces without touching the model). Each
    episode shape (a protocol's queries per class) gets its own trace with
    static shapes."""
    cache = model.__dict__.setdefault("_few_shot_scores", {})
    if "fn" not in cache:
        cache["fn"] = tf.function(
            lambda x, y, steps, bn_mode: per_task_scores(
                model, x, y, steps, bn_mode
            ),
        )
    return cache["fn"]


def queries_per_class(model, x):
    """`(shots, queries)` per class of an episode batch: support and query
    examples per class for classification (the ways read off the first
    task's support labels), per task for regression."""
    support, query = x["support_x"].shape[1], x["query_x"].shape[1]
    ways = 1
    if model.num_classes is not None:
        ways = int(np.max(np.asarray(x["support_y"][0]))) + 1
    return support // ways, query // ways


def evaluate_few_shot(
    model,
    episodes,
    num_tasks=None,
    inner_steps=None,
    bn_mode=None,
    protocol=None,
):
    """Scores a meta-learner on `num_tasks` tasks of `episodes`.

    Each task is adapted on its support set (`inner_steps`, default the
    model's `eval_inner_steps`) and scored on its query set.

    Args:
        model: a compiled `keras_meta.MetaLearner`.
        episodes: a dataset of meta-batches, as `keras_meta.data` makes
            (meta-test tasks for the papers' figures); read from its start
            until `num_tasks` tasks are scored.
        num_tasks: number of test tasks (default: the protocol's, else 600).
        inner_steps: adaptation steps (default: the protocol's, else
            `model.eval_inner_steps`).
        bn_mode: `"transductive"` or `"non_transductive"` (default: the
            protocol's first mode, else `model.bn_mode`).
        protocol: a `keras_meta.protocols.Protocol` or its name (`"maml"`,
            `"reptile"`, `"mamlpp"`, `"15_queries"`). The episodes must
            have its queries per class (a `ValueError` says so otherwise);
            `evaluate_protocol` reports every batch-norm mode it names.

    Returns:
        A `FewShotResult`, with each task's score in `task_scores`.
    """
    if protocol is not None:
        protocol = protocols.get(protocol)
        num_tasks = protocol.num_tasks if num_tasks is None else num_tasks
        if inner_steps is None:
            inner_steps = protocol.inner_steps
        bn_mode = bn_mode or protocol.bn_modes[0]
    num_tasks = 600 if num_tasks is None else num_tasks
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
    steps = model.eval_inner_steps if inner_steps is None else inner_steps
    bn_mode = bn_mode or model.bn_mode
    scores = _scores_function(model)
    collected, total, queries = [], 0, None
    for x, y in episodes:
        shots, queries = queries_per_class(model, x)
        if protocol is not None and total == 0:
            wanted = protocol.queries_per_class(shots)
            if queries != wanted:
                raise ValueError(
                    f"Protocol {protocol.name!r} tests with {wanted} "
                    f"quer{'y' if wanted == 1 else 'ies'} per class, but the "
                    f"episodes have {queries}: make them with queries="
                    f"{wanted} (protocol.queries_per_class({shots}))."
                )
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
    values = np.concatenate(collected).astype(np.float64)
    return FewShotResult(
        metric="accuracy" if model.num_classes is not None else "loss",
        mean=float(np.mean(values)),
        ci95=ci95(values),
        std=float(np.std(values)),
        num_tasks=num_tasks,
        inner_steps=int(steps),
        bn_mode=bn_mode,
        protocol=None if protocol is None else protocol.name,
        queries=queries,
        task_scores=tuple(float(v) for v in values),
    )


def evaluate_protocol(model, episodes, protocol, num_tasks=None):
    """The model under every batch-norm mode `protocol` names, on the same
    tasks: a tuple of `FewShotResult`s, the headline (first mode) first.
    `num_tasks` overrides the protocol's count (a quick check)."""
    protocol = protocols.get(protocol)
    return tuple(
        evaluate_few_shot(
            model, episodes, num_tasks, bn_mode=mode, protocol=protocol
        )
        for mode in protocol.bn_modes
    )
