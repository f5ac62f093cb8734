"""Episodes in, checked: what a meta-learner accepts, with clear errors.

An episode batch is Keras's `(x, y, sample_weight)` with
`x = {"support_x": [T, S, ...], "support_y": [T, S(, d)], "query_x": [T, Q,
...]}`, `y = query_y [T, Q(, d)]` and `sample_weight` `[T]` (per task) or
`[T, Q]` (per query example). `unpack` checks what is known statically
(types, ranks, image shape against the learner, empty sets, mismatched
counts) with `ValueError`/`TypeError`, and adds in-graph checks for what is
known only at run time (the same counts and shapes, and the label values on
every batch: integers in `0..N-1`). Eagerly these raise `ValueError` too;
inside a compiled step they raise `InvalidArgumentError` with the same
message, so a bad batch anywhere in a dataset stops training with an error
that says what is wrong. (Under XLA, TensorFlow drops such checks; a bad
label then shows up as a non-finite loss.)
"""

from typing import NamedTuple

import keras
import tensorflow as tf

EPISODE_KEYS = ("support_x", "support_y", "query_x")


class LearnerSpec(NamedTuple):
    """What a learner takes and gives, without the batch axis."""

    input_shape: tuple  # for example (28, 28, 1)
    output_shape: tuple  # (N,) logits, or (d,) regression targets
    num_classes: int | None  # N for classification, None for regression
    input_dtype: str = "float32"

    @classmethod
    def of(cls, learner, num_classes=None):
        output_shape = tuple(learner.outputs[0].shape[1:])
        if num_classes is None:
            units = output_shape[-1] if output_shape else None
            num_classes = units if units and units > 1 else None
        return cls(
            tuple(learner.inputs[0].shape[1:]),
            output_shape,
            num_classes,
            tf.as_dtype(learner.inputs[0].dtype).name,
        )


class Episode(NamedTuple):
    """A meta-batch of T tasks, task axis first."""

    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor | None = None
    sample_weight: tf.Tensor | None = None


def check(condition, message, data=()):
    """`condition` (a boolean tensor) must hold: a `ValueError` eagerly, an
    assertion op in a graph (returned, to be a control dependency)."""
    if tf.executing_eagerly():
        if not bool(condition):
            values = " ".join(str(d.numpy()) for d in data)
            raise ValueError(message + (f" (got {values})" if data else ""))
        return None
    return tf.debugging.Assert(condition, [message, *data], summarize=8)


def _compatible(actual, expected):
    return all(
        a is None or e is None or a == e for a, e in zip(actual, expected)
    )


def check_inputs(name, x, spec, task_axis):
    """Static rank and example-shape checks of `support_x`/`query_x`."""
    lead = 2 if task_axis else 1
    want = len(spec.input_shape) + lead
    if x.shape.rank != want:
        axes = (
            "a task axis T, an example axis" if task_axis else "an example axis"
        )
        hint = (
            " For one task use adapt()."
            if task_axis and x.shape.rank == want - 1
            else ""
        )
        raise ValueError(
            f"{name} must have rank {want}: {axes}, then the learner's input "
            f"shape {spec.input_shape}; got shape {x.shape}.{hint}"
        )
    if not _compatible(x.shape[lead:], spec.input_shape):
        raise ValueError(
            f"{name} holds examples of shape {tuple(x.shape[lead:])}, but the "
            f"learner takes {spec.input_shape}: resize the images (or build "
            "the learner for this shape)."
        )
    if x.dtype.is_integer and tf.as_dtype(spec.input_dtype).is_floating:
        raise TypeError(
            f"{name} holds {x.dtype.name} values (0-255 pixels?), but the "
            f"learner takes {spec.input_dtype}: convert the images and scale "
            "them to [0, 1] first, e.g. images.astype('float32') / 255 "
            "(keras_meta.data's loaders do)."
        )
    if x.shape[lead - 1] == 0:
        what = "support" if name.startswith("support") else "query"
        raise ValueError(
            f"The {what} set is empty ({name} has shape {x.shape}); each task "
            "needs at least one example."
        )


def _check_targets(name, y, x_name, x, spec, task_axis):
    """Static checks of labels or targets against their inputs."""
    lead = 2 if task_axis else 1
    if spec.num_classes is not None:
        if y.shape.rank != lead:
            raise ValueError(
                f"{name} must hold one class id per example, shape "
                f"{'[T, n]' if task_axis else '[n]'}; got shape {y.shape}."
            )
        if not (y.dtype.is_integer or y.dtype.is_floating):
            raise TypeError(f"{name} must hold numbers, got {y.dtype.name}.")
    elif (
        tuple(y.shape[lead:]) != spec.output_shape and y.shape.rank is not None
    ):
        if not _compatible(y.shape[lead:], spec.output_shape):
            raise ValueError(
                f"{name} holds targets of shape {tuple(y.shape[lead:])}, but "
                f"the learner predicts {spec.output_shape}."
            )
    if not _compatible(y.shape[:lead], x.shape[:lead]):
        raise ValueError(
            f"{name} must have one label per example of {x_name}: shapes "
            f"{y.shape} and {x.shape} disagree on their first {lead} axes."
        )


def label_checks(name, y, ways):
    """In-graph checks that labels are class ids `0..ways-1`."""
    as_float = tf.cast(y, tf.float64)
    return [
        check(
            tf.reduce_all(tf.equal(as_float, tf.round(as_float))),
            f"{name} holds labels that are not whole numbers: labels are "
            "class ids 0..N-1.",
        ),
        check(
            tf.reduce_all((as_float >= 0) & (as_float < ways)),
            f"{name} holds labels outside 0..{ways - 1}, but the learner "
            f"has {ways} outputs, so labels must lie in 0..{ways - 1}. "
            f"Build episodes with ways={ways}, or give the learner as many "
            "outputs as ways. Smallest and largest label:",
            [tf.reduce_min(as_float), tf.reduce_max(as_float)],
        ),
    ]


def _runtime_checks(name, y, x_name, x, spec):
    """In-graph checks of one `[T, n(, d)]` labels tensor of a meta-batch:
    counts against its inputs, and label values."""
    checks = [
        check(
            tf.reduce_all(tf.equal(tf.shape(y)[:2], tf.shape(x)[:2])),
            f"{name} must have one label per example of {x_name}; their "
            "shapes are",
            [tf.shape(y), tf.shape(x)],
        ),
        check(
            tf.shape(x)[1] > 0,
            f"{x_name} is empty: each task needs at least one example.",
        ),
    ]
    if spec.num_classes is not None:
        checks += label_checks(name, y, spec.num_classes)
    return [c for c in checks if c is not None]


def with_checks(tensors, checks):
    """`tensors` that depend on `checks` (in a graph), so nothing downstream
    runs on input that failed them."""
    if not checks:
        return tensors
    with tf.control_dependencies(checks):
        return [None if t is None else tf.identity(t) for t in tensors]


def as_labels(y, spec):
    """Class ids as int32 (checked to be whole numbers first)."""
    return tf.cast(y, tf.int32) if spec.num_classes is not None else y


def unpack(x, y, sample_weight, spec, owner="The meta-learner"):
    """Checks an episode batch and returns it as an `Episode`.

    Args:
        x: the episode dict; y: query labels or targets, or None;
        sample_weight: None, `[T]` or `[T, Q]`.
        spec: the learner's `LearnerSpec`.
        owner: the model's class name, for the messages.
    """
    if not isinstance(x, dict):
        raise TypeError(
            f"{owner} takes episodes: x must be a dict with keys "
            f"{EPISODE_KEYS}, got {type(x).__name__}. Build them with "
            "keras_meta.data (for example episodes_from_arrays)."
        )
    missing = [k for k in EPISODE_KEYS if k not in x]
    if missing:
        raise ValueError(
            f"The episode dict lacks {missing}; it must have keys "
            f"{EPISODE_KEYS}, got {sorted(x)}."
        )
    support_x, support_y, query_x = (
        tf.convert_to_tensor(x[k]) for k in EPISODE_KEYS
    )
    check_inputs("support_x", support_x, spec, task_axis=True)
    check_inputs("query_x", query_x, spec, task_axis=True)
    _check_targets("support_y", support_y, "support_x", support_x, spec, True)
    checks = _runtime_checks(
        "support_y", support_y, "support_x", support_x, spec
    )
    if y is not None:
        y = tf.convert_to_tensor(y)
        _check_targets("query_y", y, "query_x", query_x, spec, True)
        checks += _runtime_checks("query_y", y, "query_x", query_x, spec)
    if sample_weight is not None:
        sample_weight = _sample_weights(sample_weight, query_x)
        checks += [
            c
            for c in [
                check(
                    tf.reduce_all(sample_weight >= 0),
                    "sample_weight holds negative weights, which would push "
                    "those tasks' query loss up instead of down: weights "
                    "must be >= 0. Smallest weight:",
                    [tf.reduce_min(sample_weight)],
                )
            ]
            if c is not None
        ]
    support_x, support_y, query_x, y, sample_weight = with_checks(
        [support_x, support_y, query_x, y, sample_weight], checks
    )
    return Episode(
        support_x,
        as_labels(support_y, spec),
        query_x,
        None if y is None else as_labels(y, spec),
        sample_weight,
    )


def _sample_weights(sample_weight, query_x):
    """Per-task `[T]` or per-example `[T, Q]` weights, as `[T, Q]` floats."""
    weight = keras.ops.convert_to_tensor(sample_weight, keras.config.floatx())
    tasks, queries = query_x.shape[:2]
    wanted = {1: (tasks,), 2: (tasks, queries)}.get(weight.shape.rank)
    if wanted is None or not _compatible(weight.shape, wanted):
        raise ValueError(
            "sample_weight must be [T] (one weight per task) or [T, Q] (one "
            f"per query example); got shape {tuple(weight.shape)} for a "
            f"batch of T={tasks} tasks of Q={queries} queries: give shape "
            f"({tasks},) or ({tasks}, {queries})."
        )
    if weight.shape.rank == 1:
        weight = tf.broadcast_to(weight[:, None], tf.shape(query_x)[:2])
    return weight
