"""One task in, checked: `unpack_task` for `adapt` and the SavedModel's
serving function, which take a single task (no task axis) of any shape.

The checks are those of `keras_meta.engine.episode_checks`, all of them also in
the graph, because a serving request's shapes are known only at run time.
"""

import tensorflow as tf

from keras_meta.engine.episode_checks import (
    as_labels,
    check,
    check_inputs,
    label_checks,
    with_checks,
)


def _leading(shape, n):
    """The first `n` entries of a shape vector, padded with -1: a vector
    of length `n` whatever the rank, so comparing it cannot fail."""
    return tf.concat([shape, tf.fill([n], -1)], axis=0)[:n]


def _task_label_checks(support_y, support_x, spec):
    """In-graph checks of ONE task's labels: rank, count, values."""
    labels_rank = 1 + (0 if spec.num_classes else len(spec.output_shape))
    labels_ok = tf.equal(tf.rank(support_y), labels_rank)
    counts_ok = labels_ok & tf.equal(
        _leading(tf.shape(support_y), 1)[0], _leading(tf.shape(support_x), 1)[0]
    )
    checks = [
        check(
            counts_ok,
            "support_y must have one label per example of support_x; "
            "the shapes of support_y and support_x are",
            [tf.shape(support_y), tf.shape(support_x)],
        )
    ]
    if spec.num_classes is not None:
        checks += label_checks("support_y", support_y, spec.num_classes)
    return checks


def _finite_checks(support_x, support_y, query_x, spec):
    """Every float input must be finite: one NaN or inf pixel would make
    every query's prediction NaN (batch norm mixes the examples)."""
    named = [("support_x", support_x), ("query_x", query_x)]
    if spec.num_classes is None:
        named.append(("support_y", support_y))
    checks = []
    for name, x in named:
        if x.dtype.is_floating:
            bad = tf.logical_not(tf.math.is_finite(x))
            checks.append(
                check(
                    tf.logical_not(tf.reduce_any(bad)),
                    f"{name} holds NaN or infinite values, which would make "
                    "every prediction NaN: send finite numbers. Non-finite "
                    "entries:",
                    [tf.reduce_sum(tf.cast(bad, tf.int32))],
                )
            )
    return checks


def unpack_task(support_x, support_y, query_x, spec):
    """Checks ONE task (no task axis) for `adapt` and the SavedModel's
    serving function; returns the three tensors, labels as int32 and inputs
    with the learner's static shape.

    The serving function takes inputs of any shape, so every check also
    runs in the graph, before anything downstream: a request of the wrong
    rank or image size gets an `InvalidArgumentError` that says so, instead
    of reaching (and crashing) a convolution kernel.
    """
    support_x, support_y, query_x = (
        tf.convert_to_tensor(t) for t in (support_x, support_y, query_x)
    )
    rank = len(spec.input_shape) + 1
    checks = []
    for name, x in (("support_x", support_x), ("query_x", query_x)):
        if x.shape.rank is not None:
            check_inputs(name, x, spec, task_axis=False)
        rank_ok = tf.equal(tf.rank(x), rank)
        checks.append(
            check(
                rank_ok,
                f"{name} must have rank {rank}: [examples, "
                f"{', '.join(map(str, spec.input_shape))}]; its shape is",
                [tf.shape(x)],
            )
        )
        expected = list(spec.input_shape)
        # Wrong ranks are the check above's to report.
        shape_ok = tf.logical_not(rank_ok) | tf.reduce_all(
            tf.equal(_leading(tf.shape(x)[1:], len(expected)), expected)
        )
        checks.append(
            check(
                shape_ok & (tf.logical_not(rank_ok) | (tf.size(x) > 0)),
                f"{name} must hold at least one example of shape "
                f"{spec.input_shape} (the learner's input); its shape is",
                [tf.shape(x)],
            )
        )
    checks += _task_label_checks(support_y, support_x, spec)
    checks += _finite_checks(support_x, support_y, query_x, spec)
    support_x, support_y, query_x = with_checks(
        [support_x, support_y, query_x], [c for c in checks if c is not None]
    )
    # Reshaping (not tf.ensure_shape, whose shape constraint TensorFlow's
    # graph optimiser propagates back to the inputs, folding the rank
    # checks above away) gives the learner its static shapes.
    labels_shape = [-1] if spec.num_classes else [-1, *spec.output_shape]
    return (
        tf.reshape(support_x, [-1, *spec.input_shape]),
        as_labels(tf.reshape(support_y, labels_shape), spec),
        tf.reshape(query_x, [-1, *spec.input_shape]),
    )
