"""One task at a time, inside one graph: the per-task pieces of the engine.

`Task` is what the hooks of a `MetaLearner` receive; `TaskUpdate` is what a
task contributes to a meta-update; `map_tasks` runs a per-task function over
the T tasks of an `Episode` with `tf.map_fn`, so nothing retraces per task
and at most `keras_meta.config.task_parallelism()` tasks are in flight.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_meta.config import task_parallelism


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
    is the learner's non-trainable state after the task.
    """

    update: list
    loss: tf.Tensor
    predictions: tf.Tensor
    state: list


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


def map_tasks(fn, episode, output_signature, iteration=0):
    """`fn(Task) -> outputs` for each task of `episode`, stacked on a task
    axis; a `tf.while_loop` (`tf.map_fn`) keeping at most
    `task_parallelism()` tasks in flight, the bound on memory (each task in
    flight holds its activations until its gradient is taken)."""
    fields = {
        name: value
        for name, value in episode._asdict().items()
        if value is not None
    }
    fields["seed"] = task_seeds(tf.shape(episode.support_x)[0], iteration)
    return tf.map_fn(
        lambda elems: fn(Task(**elems)),
        fields,
        fn_output_signature=output_signature,
        parallel_iterations=task_parallelism(),
    )
