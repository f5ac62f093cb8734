"""One task, no task axis: `adapt`, `adapted_learner` and the serving
function's predictions (a mixin of `MetaLearner`)."""

import keras
import tensorflow as tf

from keras_meta.checks import check_count
from keras_meta.engine import task_inputs
from keras_meta.engine.tasks import Task


class SingleTask:
    """Adaptation to ONE task, for `MetaLearner`."""

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
