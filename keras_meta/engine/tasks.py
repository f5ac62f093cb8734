"""One task at a time, inside one graph: the per-task pieces of the engine.

`Task` is what the hooks of a `MetaLearner` receive; `TaskUpdate` is what a
task contributes to a meta-update; `map_tasks` runs a per-task function over
the T tasks of an `Episode`, traced once for all of them, with at most
`keras_meta.config.task_parallelism()` tasks in flight: in a `tf.map_fn`
loop, or as a `tf.data` map on a thread pool of their own. `map_task_groups`
runs a function over groups of tasks instead, for algorithms whose tasks
vectorize (`MetaLearner.vectorize_tasks`).
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_meta import config


class Task(NamedTuple):
    """One task: `support_x [S, ...]`, `support_y [S(, d)]`, `query_x [Q,
    ...]`, and when known `query_y [Q(, d)]` and `sample_weight [Q]`.
    `seed` is a `[2]` int32 stateless seed, different for every task of
    every meta-iteration, for algorithms that draw random numbers."""

    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor | None = None
    sample_weight: tf.Tensor | None = None
    seed: tf.Tensor | None = None


class TaskUpdate(NamedTuple):
    """A task's contribution to the meta-update.

    `update` is a list aligned with `MetaLearner.meta_variables` (a
    meta-gradient, or for Reptile the adapted weights); the engine averages
    it over tasks and hands the mean to `MetaLearner.meta_gradients`.
    `loss` (scalar) and `predictions` (`[Q, ...]`) feed the metrics; `state`
    is the task's state after it (the structure of `state_variables`).
    """

    update: list
    loss: tf.Tensor
    predictions: tf.Tensor
    state: dict


def per_example_loss(loss):
    """`fn(y_true, y_pred) -> [n]` for the loss given to `compile`.

    Accepts a `keras.losses.Loss`, a loss name (`"mse"`,
    `"sparse_categorical_crossentropy"`, ...) or a function returning
    per-example values. The values are left unreduced so that sample
    weights can scale them; a task's loss is their mean.
    """
    if loss is None:
        raise ValueError(
            "The meta-learner has no loss: call `model.compile(loss=...)` "
            "first, for example with "
            "`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` "
            "for classification or `'mse'` for regression."
        )
    if isinstance(loss, (list, tuple, dict)):
        raise TypeError(
            "A meta-learner takes a single task loss, got a "
            f"{type(loss).__name__} of losses: {loss!r}. Pass one loss."
        )
    loss_obj = keras.losses.get(loss)
    if isinstance(loss_obj, keras.losses.Loss):
        # Loss.__call__ would reduce, and divide by the number of
        # tf.distribute replicas (Keras's convention for summed replica
        # gradients); a task loss must not depend on where it runs.
        def values(y_true, y_pred):
            y_pred = keras.ops.convert_to_tensor(y_pred, dtype=loss_obj.dtype)
            y_true = keras.ops.convert_to_tensor(y_true, dtype=loss_obj.dtype)
            return loss_obj.call(y_true, y_pred)

        return values
    return loss_obj


def task_seeds(count, iteration):
    """`[count, 2]` int32 stateless seeds: task i of meta-iteration
    `iteration` gets `(iteration, i)`, offset by the replica under
    `tf.distribute`, so that no two tasks share one."""
    context = tf.distribute.get_replica_context()
    offset = 0
    if context is not None:
        offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * count
    index = tf.range(count, dtype=tf.int32) + offset
    iteration = tf.cast(iteration, tf.int32) * tf.ones_like(index)
    return tf.stack([iteration, index], axis=1)


def task_fields(episode, iteration=0):
    """The episode's tensors by `Task` field name, each `[T, ...]`, with
    every task's stateless seed."""
    fields = {
        name: value
        for name, value in episode._asdict().items()
        if value is not None
    }
    fields["seed"] = task_seeds(tf.shape(episode.support_x)[0], iteration)
    return fields


def group_size(count, most):
    """The largest divisor of `count` tasks that is at most `most`, so that
    the tasks split into equal groups."""
    return max(k for k in range(1, min(count, most) + 1) if count % k == 0)


def map_task_groups(fn, episode, output_signature, iteration=0, most=8):
    """`fn(group) -> outputs` over the T tasks of `episode` in equal groups
    of k tasks, one group after the other; outputs stacked `[G, ...]`.

    `group` is a dict of `Task` fields, each `[k, ...]`: `fn` handles k
    tasks at once (`tf.vectorized_map`), so their ops run as one batch with
    every core, on any device and under XLA. k is the largest divisor of T
    up to `most` (all T tasks when T is known only when the graph runs);
    memory grows with it, as each group's activations live together.
    """
    fields = task_fields(episode, iteration)
    count = fields["support_x"].shape[0]
    if count is None:
        grouped = {name: value[tf.newaxis] for name, value in fields.items()}
    else:
        size = group_size(count, most)
        grouped = {
            name: tf.reshape(value, [count // size, size, *_inner_shape(value)])
            for name, value in fields.items()
        }
    return tf.map_fn(
        fn, grouped, fn_output_signature=output_signature, parallel_iterations=1
    )


def _inner_shape(value):
    """The shape of `value` after its task axis, static where known (Keras
    relaxes a retraced step's sizes to unknown)."""
    dynamic = tf.shape(value)
    return [
        size if size is not None else dynamic[i + 1]
        for i, size in enumerate(value.shape[1:])
    ]


def ungroup(values):
    """`[G, k, ...]` group outputs as `[G * k, ...]` task outputs."""
    dynamic = tf.shape(values)
    rest = [
        size if size is not None else dynamic[i + 2]
        for i, size in enumerate(values.shape[2:])
    ]
    return tf.reshape(values, [-1, *rest])


def map_tasks(fn, episode, output_signature, iteration=0, own_pool=False):
    """`fn(Task) -> outputs` for each task of `episode`, stacked on a task
    axis, with at most `task_parallelism()` tasks in flight (the bound on
    memory: each task in flight holds its activations until its gradient is
    taken).

    With `own_pool` (the caller's word that no XLA or `tf.distribute`
    context is around) and `config.private_pool_threads()` set, the tasks
    run on a thread pool of their own (`on_own_pool`); otherwise in a
    `tf.while_loop` (`tf.map_fn`) on TensorFlow's threading.
    """
    fields = task_fields(episode, iteration)
    threads = config.private_pool_threads() if own_pool else None
    if threads:
        return on_own_pool(fn, fields, output_signature, threads)
    return tf.map_fn(
        lambda elems: fn(Task(**elems)),
        fields,
        fn_output_signature=output_signature,
        parallel_iterations=config.task_parallelism(),
    )


def on_own_pool(fn, fields, output_signature, threads_per_op):
    """`map_tasks` as a `tf.data` map: `task_parallelism()` tasks at once on
    a private pool, each op on `threads_per_op` threads.

    This is how the tasks get one core each without changing TensorFlow's
    process-wide thread pools (fixed at start-up and shared by every model
    in the process). `tf.data` runs its functions on the host CPU, outside
    XLA and `tf.distribute`, hence only there. The map is deterministic:
    the outputs come in task order.
    """
    tasks = config.task_parallelism()
    options = tf.data.Options()
    options.threading.private_threadpool_size = tasks * threads_per_op
    options.threading.max_intra_op_parallelism = threads_per_op
    options.autotune.enabled = False  # the pool is sized here
    options.experimental_optimization.apply_default_optimizations = False
    count = fields["support_x"].shape[0]

    def one_task(elems):
        # Dense, as tf.map_fn's signature makes them: a gradient can come
        # as `tf.IndexedSlices` (MAML++'s per-step parameters, gathered).
        return tuple(
            tf.convert_to_tensor(value)
            for value in tf.nest.flatten(fn(Task(**elems)))
        )

    stacked = (
        tf.data.Dataset.from_tensor_slices(fields)
        .map(one_task, num_parallel_calls=tasks, deterministic=True)
        .batch(tf.cast(tf.shape(fields["support_x"])[0], tf.int64))
        .with_options(options)
        .get_single_element()
    )
    stacked = [
        tf.ensure_shape(values, [count, *spec.shape])
        for values, spec in zip(
            stacked, tf.nest.flatten(output_signature), strict=True
        )
    ]
    return tf.nest.pack_sequence_as(output_signature, stacked)
