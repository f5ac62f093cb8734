"""`MetaLearner`: the `keras.Model` every algorithm subclasses.

A meta-learner wraps a plain Keras model, the *learner*, and meta-learns its
initialisation on episodes (`keras_meta.engine.episode_checks`). The engine runs
the T tasks of a meta-batch in one graph and leaves four public hooks to an
algorithm:

- `adapt_task(weights, state, task, steps, differentiable)`: how a task
  adapts (the inner loop). Every algorithm defines it.
- `task_update(weights, state, task)`: what a task contributes to the
  meta-update. Default: the gradient of the query loss after adaptation
  with respect to `meta_variables` (second order when `second_order`).
- `meta_gradients(values, mean_update)`: how the mean of the task
  contributions becomes the gradient handed to the optimizer. Default: as
  it is.
- `predict_task(weights, state, task, steps, ...)`: how an adapted task
  predicts its queries. Default: `adapt_task`, then the learner.

Writing one (first-order MAML in ten lines): README.md, "Writing a new
meta-learner".

Weights are lists of tensors aligned with `learner.trainable_variables`
("fast weights"), state with `learner.non_trainable_variables`; `forward`,
`support_loss` and `query_loss` run the learner on them (learner
regularisation losses included). The learner always runs in training mode,
so batch-norm normalises with the statistics of the batch it sees, as the
MAML reference code does; `bn_mode="non_transductive"` classifies queries
with the support set's statistics instead. The moving statistics are
carried through a task's calls and, after each meta-update, set to their
mean over the tasks: they serve only the bare learner in inference mode.
"""

import keras
import tensorflow as tf

from keras_meta import compat, config, inner_loop
from keras_meta.checks import check_learner, check_rate
from keras_meta.engine import distribute, serving
from keras_meta.engine.inputs import EpisodeInputs
from keras_meta.engine.learner_calls import LearnerCalls
from keras_meta.engine.predictions import Predictions
from keras_meta.engine.settings import Settings
from keras_meta.engine.tasks import (
    Task,
    TaskUpdate,
    map_task_groups,
    map_tasks,
    ungroup,
)
from keras_meta.learner_parts import (
    BatchNormStatistics,
    warn_if_inexact_batch_norm,
)


@keras.saving.register_keras_serializable(package="keras_meta")
class MetaLearner(
    distribute.KerasIssue20585,
    EpisodeInputs,
    LearnerCalls,
    Predictions,
    serving.Saving,
    Settings,
    keras.Model,
):
    """Base class: a meta-learner over a wrapped Keras `learner`.

    Args:
        learner: a built `keras.Model` mapping `[batch, ...]` inputs to
            `[batch, ...]` outputs (logits for classification).
        inner_lr: step size of the inner loop.
        inner_steps: inner steps per task during meta-training.
        eval_inner_steps: inner steps per task in `evaluate`, `predict` and
            `model(x)`; defaults to `inner_steps`.
        bn_mode: `"transductive"` or `"non_transductive"`: which batch-norm
            statistics normalise query examples at evaluation.
        **kwargs: passed to `keras.Model` (for example `name`).
    """

    second_order = True  # whether `task_update` differentiates the steps
    # Whether the engine may run the tasks of a meta-batch together under
    # `tf.vectorized_map`, `tasks_per_group` at a time: for algorithms whose
    # heavy ops use the shared meta-weights (ANIL, where only the head
    # adapts, if asked; Pretrain's fresh-head evaluation). It needs the default
    # `task_update`: the group's meta-gradient is taken once, of the mean
    # query loss, rather than per task.
    vectorize_tasks = False
    tasks_per_group = 8

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps: int | None = None,
        bn_mode="transductive",
        **kwargs,
    ):
        super().__init__(**kwargs)
        config.warn_if_slow_cpu_kernels()
        check_learner(learner)
        self.learner = learner
        self.inner_lr = check_rate(inner_lr)
        self.inner_steps = inner_steps
        self.eval_inner_steps = (
            self.inner_steps if eval_inner_steps is None else eval_inner_steps
        )
        self.bn_mode = bn_mode
        if self.vectorize_tasks and (
            type(self).task_update is not MetaLearner.task_update
        ):
            raise TypeError(
                f"{type(self).__name__} sets vectorize_tasks but overrides "
                "task_update: vectorized tasks take the meta-gradient of "
                "the default task_update. Set vectorize_tasks = False."
            )
        self._batch_norm = BatchNormStatistics(learner)
        # The learner is built, so is the meta-learner: Keras need not trace
        # a symbolic episode through the inner loop to create weights.
        self.built = True

    def second_order_layers(self):
        """The learner's layers whose second derivatives the meta-gradient
        takes: all of them when `second_order` (ANIL: the head's). A hook
        for `train_step`'s check of Keras's batch norm."""
        if not self.second_order:
            return []
        return compat.flatten_layers(self.learner)

    @property
    def meta_variables(self):
        """The variables the meta-update trains: the learner's, then
        `own_meta_variables`."""
        return [*self.learner.trainable_variables, *self.own_meta_variables]

    @property
    def own_meta_variables(self):
        """The algorithm's own meta-trained variables, after the learner's
        in `meta_variables` (Meta-SGD's learned rates); none by default."""
        return []

    @property
    def state_variables(self):
        """The non-trained state a task carries, by name: `"learner"`, the
        learner's non-trainable variables (a list), and the algorithm's
        own parts (for example MAML++'s `"bn_means"`). Hooks receive and
        return a task's state in this structure (tensors for variables).
        After each meta-update each variable is set from the tasks' final
        values (`TaskUpdate.state`)."""
        return {"learner": list(self.learner.non_trainable_variables)}

    # -- hooks ------------------------------------------------------------

    def adapt_task(self, weights, state, task, steps, differentiable):
        """How a task adapts: `(fast weights, state)` after `steps` inner
        steps from `weights` on `task`'s support set, recorded for an
        enclosing tape when `differentiable`. Every algorithm defines it."""
        raise NotImplementedError(
            f"{type(self).__name__} must define adapt_task."
        )

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        """`(query predictions [Q, ...], state, learner losses)` after
        adapting to `task` with `steps` steps."""
        fast, state = self.adapt_task(
            weights, state, task, steps, differentiable
        )
        if transductive:
            return self.forward(fast, state, task.query_x)
        y_pred = self._batch_norm.call(
            self.learner, fast, state["learner"], task.query_x, task.support_x
        )
        return y_pred, state, []

    def task_update(self, weights, state, task):
        """What a task contributes: the gradient of its query loss after
        `inner_steps` steps with respect to `meta_variables`, through the
        steps when `second_order` (MAML), or not (first-order MAML)."""
        init = [tf.identity(w) for w in weights]  # watchable in the loop
        own = self.own_meta_variables
        with tf.GradientTape() as tape:
            tape.watch(init)
            loss, y_pred, state = self._query_objective(init, state, task)
            scaled = self.scale_loss(loss)
        grads = tape.gradient(scaled, init + own)
        return TaskUpdate(
            inner_loop.zeros_for_none(grads, init + own), loss, y_pred, state
        )

    def _query_objective(self, weights, state, task):
        """`(query loss, query predictions, state)` of `task` after
        `inner_steps` steps from `weights`: what `task_update`
        differentiates."""
        y_pred, state, losses = self.predict_task(
            weights, state, task, self.inner_steps, self.second_order
        )
        return self.query_loss(task, y_pred, losses), y_pred, state

    def _group_update(self, weights, state, group):
        """The default `task_update` for a group of tasks at once
        (`vectorize_tasks`): the gradient of their mean query loss (the
        mean of their gradients), their losses `[k]`, predictions `[k, Q,
        ...]` and states `[k, ...]`."""
        init = [tf.identity(w) for w in weights]
        own = self.own_meta_variables
        with tf.GradientTape() as tape:
            tape.watch(init)
            losses, y_pred, states = tf.vectorized_map(
                lambda fields: self._query_objective(
                    init, state, Task(**fields)
                ),
                group,
            )
            loss = self.scale_loss(tf.reduce_mean(losses))
        grads = inner_loop.zeros_for_none(
            tape.gradient(loss, init + own), init + own
        )
        return grads, tf.cast(losses, self._loss_dtype()), y_pred, states

    def meta_gradients(self, values, mean_update):
        """The gradient for the optimizer, from the current `values` of
        `meta_variables` and the mean over tasks of `task_update`'s lists:
        here that mean itself."""
        del values
        return mean_update

    def scale_loss(self, value):
        """`value` times the optimizer's loss scale, as Keras's own
        `train_step` scales the loss it differentiates: under a
        `mixed_float16` policy Keras wraps the optimizer in a
        `LossScaleOptimizer`, which divides the gradients it is given by
        that scale. A gradient the engine hands the optimizer goes through
        this (the default `task_update` differentiates the scaled loss;
        Reptile scales its `phi - W`)."""
        if self.optimizer is None:
            return value
        return self.optimizer.scale_loss(value)

    # -- Keras steps --------------------------------------------------------

    def train_step(self, data):
        """One meta-update over the T tasks of a meta-batch: the mean over
        tasks of `task_update`, through `meta_gradients`, to the optimizer."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError(
                "Meta-training needs query labels: pass (x, query_y) episodes."
            )
        warn_if_inexact_batch_norm(self.second_order_layers())
        episode = self.episode(x, y, sample_weight)
        weights, state = self.weights_and_state()
        variables = self.meta_variables
        per_tasks = (
            self._grouped_updates
            if self.vectorize_tasks
            else self._task_updates
        )
        updates, losses, y_pred, states = per_tasks(weights, state, episode)
        mean_update = [tf.reduce_mean(u, axis=0) for u in updates]
        values = [tf.convert_to_tensor(v) for v in variables]
        grads = self.meta_gradients(values, mean_update)
        self.optimizer.apply_gradients(
            zip(distribute.scale_to_global(grads), variables)
        )
        self._assign_state(states)
        return self._update_metrics(episode, y_pred, tf.reduce_mean(losses))

    def _task_updates(self, weights, state, episode):
        """`task_update` of every task: updates `[T, ...]` (each a list
        aligned with `meta_variables`), losses `[T]`, predictions `[T, Q,
        ...]` and states `[T, ...]`."""

        def one_task(task):
            update = self.task_update(weights, state, task)
            loss = tf.cast(update.loss, self._loss_dtype())
            return update.update, loss, update.predictions, update.state

        return map_tasks(
            one_task,
            episode,
            (
                [tf.TensorSpec(v.shape, v.dtype) for v in self.meta_variables],
                tf.TensorSpec([], self._loss_dtype()),
                self.prediction_spec(episode.query_x),
                tf.nest.map_structure(
                    lambda s: tf.TensorSpec(s.shape, s.dtype), state
                ),
            ),
            iteration=self.optimizer.iterations,
            own_pool=self._own_pool(),
        )

    def _grouped_updates(self, weights, state, episode):
        """As `_task_updates`, for `vectorize_tasks`: the updates are each
        group's mean `[G, ...]`; losses, predictions and states per task."""
        prediction = self.prediction_spec(episode.query_x)
        updates, losses, y_pred, states = map_task_groups(
            lambda group: self._group_update(weights, state, group),
            episode,
            (
                [tf.TensorSpec(v.shape, v.dtype) for v in self.meta_variables],
                tf.TensorSpec([None], self._loss_dtype()),
                tf.TensorSpec([None, *prediction.shape], prediction.dtype),
                tf.nest.map_structure(
                    lambda s: tf.TensorSpec([None, *s.shape], s.dtype), state
                ),
            ),
            iteration=self.optimizer.iterations,
            most=self.tasks_per_group,
        )
        return (
            updates,
            ungroup(losses),
            ungroup(y_pred),
            tf.nest.map_structure(ungroup, states),
        )

    def _loss_dtype(self):
        """The dtype the task losses are reported in: float64 for a
        float64 learner, else float32."""
        if self.learner.outputs[0].dtype == "float64":
            return "float64"
        return "float32"

    def _assign_state(self, task_states):
        """Sets `state_variables` from per-task values `[T, ...]`: float
        state (moving statistics) to the mean over all tasks (of every
        replica), other state (seeds) to the last task's."""
        for variable, values in zip(
            tf.nest.flatten(self.state_variables),
            tf.nest.flatten(task_states),
            strict=True,
        ):
            if variable.dtype.startswith(("float", "bfloat")):
                variable.assign(
                    distribute.mean_over_replicas(
                        tf.reduce_mean(values, axis=0)
                    )
                )
            else:
                variable.assign(values[-1])

    def _update_metrics(self, episode, y_pred, loss):
        compat.loss_tracker(self).update_state(
            loss, sample_weight=tf.shape(episode.support_x)[0]
        )
        logs = self.compute_metrics(
            episode, episode.query_y, y_pred, episode.sample_weight
        )
        return self.logs_for_workers(logs)

    def test_step(self, data):
        """Adapts every task with `eval_inner_steps` and scores its query."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        episode = self.episode(x, y, sample_weight)
        y_pred = self._evaluated(episode)
        loss = self.task_loss(episode.query_y, y_pred, episode.sample_weight)
        return self._update_metrics(episode, y_pred, loss)
