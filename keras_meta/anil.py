"""ANIL: Almost No Inner Loop (Raghu et al., ICLR 2020)."""

import keras
import tensorflow as tf

from keras_meta import compat, inner_loop
from keras_meta.engine import MetaLearner
from keras_meta.learner_parts import LearnerSplit, put, take


@keras.saving.register_keras_serializable(package="keras_meta")
class ANIL(MetaLearner):
    """MAML whose inner loop adapts only the head.

    The learner is split into a body (all but its last `head_layers` layers)
    and a head. Per task, the body embeds the support set once, and the inner
    loop takes gradient steps on the head's variables alone; the body keeps
    its meta-learned weights. The meta-gradient still reaches the body,
    through the support features the adapted head was fitted on and through
    the query features: second order in the head, as in the paper.

    Args:
        learner: a built `keras.Model` whose last `head_layers` layers form a
            chain (for `conv4`, the final Dense layer).
        inner_lr, inner_steps, eval_inner_steps: as for `MAML`.
        head_layers: how many final layers the inner loop adapts.

    Its tasks can run together (`model.vectorize_tasks = True`),
    `tasks_per_group` at a time: the body's weights are the same for every
    task, so its layers run once on the group's images (batch-norm
    statistics still per task). Off by default: on a CPU it is slower than
    one task at a time and takes more memory (`benchmarks/README.md`).
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps: int | None = None,
        head_layers=1,
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        self.head_layers = head_layers
        self._split = LearnerSplit(learner, head_layers)

    def second_order_layers(self):
        """Only the head's steps are differentiated twice."""
        return compat.flatten_layers(self._split.head)

    def adapt_task(self, weights, state, task, steps, differentiable):
        split = self._split
        learner_state = state["learner"]
        features, body_state = split.body.stateless_call(
            take(weights, split.body_trainable),
            take(learner_state, split.body_non_trainable),
            task.support_x,
            training=True,
        )

        def head_loss(head_weights, head_state, step):
            y_pred, head_state, losses = split.head.stateless_call(
                head_weights,
                head_state,
                features,
                training=True,
                return_losses=True,
            )
            loss = self.task_loss(task.support_y, y_pred, None, losses)
            return loss, head_state

        head_weights, head_state = inner_loop.gradient_descent(
            head_loss,
            take(weights, split.head_trainable),
            take(learner_state, split.head_non_trainable),
            steps,
            self.inner_lr,
            differentiable,
        )
        weights = put(weights, split.head_trainable, head_weights)
        learner_state = put(learner_state, split.body_non_trainable, body_state)
        learner_state = put(learner_state, split.head_non_trainable, head_state)
        learner_state = [tf.stop_gradient(s) for s in learner_state]
        return weights, {**state, "learner": learner_state}

    def get_config(self):
        return {**super().get_config(), "head_layers": self.head_layers}
