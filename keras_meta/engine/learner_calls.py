"""The learner run on fast weights, and the task losses built from it:
the building blocks an algorithm's hooks use (a mixin of `MetaLearner`)."""

import keras
import tensorflow as tf

from keras_meta.engine.tasks import per_example_loss


class LearnerCalls:
    """`forward` and the losses of a task, for `MetaLearner`."""

    def weights_and_state(self):
        """Current values of the learner's trainable variables and of
        `state_variables`."""
        return (
            [tf.convert_to_tensor(v) for v in self.learner.trainable_variables],
            tf.nest.map_structure(tf.convert_to_tensor, self.state_variables),
        )

    def forward(self, weights, state, x, training=True):
        """The learner with fast `weights` on a batch `x [B, ...]`:
        `(predictions, new state, regularisation losses)`. `state` has the
        structure of `state_variables`; its `"learner"` part is used and
        updated, and it is never differentiated."""
        y_pred, learner_state, losses = self.learner.stateless_call(
            weights, state["learner"], x, training=training, return_losses=True
        )
        learner_state = [tf.stop_gradient(s) for s in learner_state]
        return y_pred, {**state, "learner": learner_state}, losses

    @property
    def loss_values(self):
        """`fn(y_true, y_pred) -> [n]`: the compiled loss, per example."""
        if (
            getattr(self, "_loss_source", None) is not self.loss
            or self.loss is None
        ):
            self._loss_values = per_example_loss(self.loss)
            self._loss_source = self.loss
        return self._loss_values

    def task_loss(self, y_true, y_pred, sample_weight=None, learner_losses=()):
        """Mean of the compiled loss over a task's examples (weighted), plus
        the learner's regularisation losses."""
        values = self.loss_values(y_true, y_pred)
        if sample_weight is not None:
            values = values * tf.cast(sample_weight, values.dtype)
        loss = keras.ops.mean(values)
        for extra in learner_losses:
            loss = loss + tf.cast(extra, loss.dtype)
        return loss

    def support_loss(self, task):
        """`fn(weights, state, step) -> (loss, state)` on `task`'s support
        set: the inner loop's objective."""

        def loss(weights, state, step):
            y_pred, state, losses = self.forward(weights, state, task.support_x)
            return self.task_loss(task.support_y, y_pred, None, losses), state

        return loss

    def query_loss(self, task, y_pred, learner_losses=()):
        """`task`'s query loss for predictions `y_pred`: the meta-loss."""
        return self.task_loss(
            task.query_y, y_pred, task.sample_weight, learner_losses
        )
