"""ANIL: Almost No Inner Loop (Raghu et al., ICLR 2020)."""

import keras

from keras_meta import inner_loop
from keras_meta.meta_learner import MetaLearner


@keras.saving.register_keras_serializable(package="keras_meta")
class ANIL(MetaLearner):
    """MAML whose inner loop adapts only the head.

    The learner is split into a body (all but its last `head_layers` layers)
    and a head. Per task, the body embeds the support set once, and the inner
    loop takes gradient steps on the head's variables alone; the body keeps
    its meta-learned weights. The meta-gradient still reaches the body, through
    the support features the adapted head was fitted on and through the query
    features: second order in the head, as in the paper.

    Args:
        learner: a built `keras.Model` whose last `head_layers` layers form a
            chain (for `conv4`, the final Dense layer).
        inner_lr, inner_steps, eval_inner_steps: as for `MAML`.
        head_layers: how many final layers the inner loop adapts.
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps=None,
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
        self._split = inner_loop.LearnerSplit(learner, head_layers)

    def _adapt_task(
        self, weights, state, support_x, support_y, steps, differentiable
    ):
        split = self._split
        features, body_state = split.body.stateless_call(
            inner_loop.take(weights, split.body_trainable),
            inner_loop.take(state, split.body_non_trainable),
            support_x,
            training=True,
        )

        def head_loss(head_weights, head_state):
            y_pred, head_state = split.head.stateless_call(
                head_weights, head_state, features, training=True
            )
            return self.task_loss(support_y, y_pred), head_state

        head_weights, head_state = inner_loop.gradient_descent(
            head_loss,
            inner_loop.take(weights, split.head_trainable),
            inner_loop.take(state, split.head_non_trainable),
            steps,
            self.inner_lr,
            differentiable,
        )
        weights = inner_loop.put(weights, split.head_trainable, head_weights)
        state = inner_loop.put(state, split.body_non_trainable, body_state)
        state = inner_loop.put(state, split.head_non_trainable, head_state)
        return weights, [keras.ops.stop_gradient(s) for s in state]

    def get_config(self):
        return {**super().get_config(), "head_layers": self.head_layers}
