"""Adapted predictions: of an episode's tasks (`call`, `predict`,
`evaluate`'s) and of ONE task, with no task axis (`adapt`,
`adapted_learner`, the serving function's); a mixin of `MetaLearner`."""

import keras
import tensorflow as tf

from keras_meta.checks import check_count
from keras_meta.engine import task_inputs
from keras_meta.engine.settings import check_bn_mode
from keras_meta.engine.tasks import Task, map_task_groups, map_tasks, ungroup


class Predictions:
    """Adaptation and predictions, for `MetaLearner`."""

    def prediction_spec(self, query_x):
        """`tf.TensorSpec` of one task's query predictions, for query
        inputs `query_x [T, Q, ...]`."""
        spec = self.learner.compute_output_spec(
            keras.KerasTensor(query_x.shape[1:], dtype=query_x.dtype)
        )
        return tf.TensorSpec(spec.shape, spec.dtype)

    def _own_pool(self):
        """Whether a Keras step may run its tasks on a thread pool of their
        own (`engine.tasks.map_tasks`): not under XLA (`jit_compile`) nor
        `tf.distribute`, where a `tf.data` map cannot run."""
        return not self.jit_compile and not tf.distribute.has_strategy()

    def _adapted(self, episode, steps, transductive, own_pool=False):
        weights, state = self.weights_and_state()

        def one_task(task):
            return self.predict_task(
                weights, state, task, steps, transductive=transductive
            )[0]

        spec = self.prediction_spec(episode.query_x)
        if self.vectorize_tasks:
            return ungroup(
                map_task_groups(
                    lambda group: tf.vectorized_map(
                        lambda fields: one_task(Task(**fields)), group
                    ),
                    episode,
                    tf.TensorSpec([None, *spec.shape], spec.dtype),
                    most=self.tasks_per_group,
                )
            )
        return map_tasks(one_task, episode, spec, own_pool=own_pool)

    def _evaluated(self, episode):
        """A Keras step's adapted predictions: `eval_inner_steps`, the
        model's `bn_mode`, on the tasks' own pool when allowed."""
        return self._adapted(
            episode,
            self.eval_inner_steps,
            self.bn_mode == "transductive",
            own_pool=self._own_pool(),
        )

    def adapted_predictions(self, x, steps=None, bn_mode=None):
        """Adapted query predictions `[T, Q, ...]` of the episode dict `x`,
        with `steps` inner steps (default `eval_inner_steps`) and batch-norm
        `bn_mode` (default the model's); changes nothing on the model."""
        steps = self.eval_inner_steps if steps is None else steps
        bn_mode = check_bn_mode(bn_mode or self.bn_mode)
        return self._adapted(
            self.episode(x),
            check_count(steps, "steps"),
            bn_mode == "transductive",
        )

    def call(self, inputs, training=None):
        """Adapted query predictions `[T, Q, ...]` of each task of
        `inputs`, with `inner_steps` when `training`, else
        `eval_inner_steps`."""
        if training:
            return self._adapted(self.episode(inputs), self.inner_steps, True)
        return self.adapted_predictions(inputs)

    def compute_output_spec(self, inputs, training=None):
        query_x = inputs["query_x"]
        spec = self.prediction_spec(query_x)
        return keras.KerasTensor(
            (query_x.shape[0], *spec.shape), dtype=spec.dtype.name
        )

    def predict_step(self, data):
        """Adapted query predictions `[T, Q, ...]`."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._evaluated(self.episode(x))

    def _one_task(self, support_x, support_y, query_x):
        support_x, support_y, query_x = task_inputs.unpack_task(
            support_x, support_y, query_x, self.learner_spec
        )
        return Task(support_x, support_y, query_x)

    def adapt(self, support_x, support_y, steps=None):
        """Adapts the learner to ONE task (no task axis): `support_x [S,
        ...]`, `support_y [S(, d)]`, `steps` default `eval_inner_steps`.

        Returns the adapted weights, a list of tensors aligned with
        `learner.trainable_variables` (the learner itself is unchanged);
        `adapted_learner` gives a ready Keras model instead.
        """
        steps = self.eval_inner_steps if steps is None else steps
        task = self._one_task(support_x, support_y, support_x)
        weights, state = self.weights_and_state()
        adapted, _ = self.adapt_task(
            weights, state, task, check_count(steps, "steps"), False
        )
        return adapted

    def adapted_learner(self, support_x, support_y, steps=None):
        """A copy of the learner adapted to ONE task: its weights are
        `adapt`'s and its batch-norm moving statistics those of the support
        set, so `model(x)` (inference mode) classifies each example alone,
        the non-transductive protocol; `model(x, training=True)` normalises
        with the batch's own statistics, the transductive one."""
        adapted = self.adapt(support_x, support_y, steps)
        state = self.weights_and_state()[1]["learner"]
        support_x = tf.convert_to_tensor(support_x)
        statistics = self._batch_norm.of(
            self.learner, adapted, state, support_x
        )
        clone = keras.models.clone_model(self.learner)
        for variable, value in zip(clone.trainable_variables, adapted):
            variable.assign(value)
        for variable, value in zip(clone.non_trainable_variables, statistics):
            variable.assign(value)
        return clone

    def adapted_task_predictions(
        self, support_x, support_y, query_x, steps, bn_mode
    ):
        """Query predictions `[Q, ...]` of ONE task (the serving function)."""
        weights, state = self.weights_and_state()
        task = Task(support_x, support_y, query_x)
        return self.predict_task(
            weights, state, task, steps, transductive=bn_mode == "transductive"
        )[0]
