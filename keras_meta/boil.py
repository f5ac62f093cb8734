"""BOIL: Body Only update in Inner Loop (Oh, Yoo, Kim and Yun, ICLR 2021)."""

import keras

from keras_meta import inner_loop
from keras_meta.checks import check_bool
from keras_meta.engine import MetaLearner
from keras_meta.learner_parts import LearnerSplit, put, take


@keras.saving.register_keras_serializable(package="keras_meta")
class BOIL(MetaLearner):
    """MAML whose inner loop adapts only the body: ANIL's opposite.

    The learner is split as ANIL splits it, a body and its last
    `head_layers` layers. Per task, the inner loop takes gradient steps on
    the body's variables alone, the head staying at its meta-learned
    weights (the paper's classifier step size of 0): to fit the support
    set, the features must move towards the frozen head's class vectors,
    which is representation change. The outer loop updates both body and
    head, through the inner steps (second order unless `first_order`).

    Args:
        learner: a built `keras.Model` whose last `head_layers` layers form a
            chain (for `conv4`, the final Dense layer).
        inner_lr: the body's inner step size (the authors' extractor step
            size: 0.5).
        inner_steps, eval_inner_steps: as for `MAML` (the authors: 1).
        head_layers: how many final layers the inner loop leaves alone.
        first_order: drop the second-order terms of the meta-gradient.
    """

    def __init__(
        self,
        learner,
        inner_lr=0.5,
        inner_steps=1,
        eval_inner_steps: int | None = None,
        head_layers=1,
        first_order=False,
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
        if not self._split.body_trainable:
            raise ValueError(
                f"BOIL adapts the body, but the learner's layers before its "
                f"last {head_layers} have no trainable variables: use a "
                "smaller head_layers."
            )
        self.first_order = check_bool(first_order, "first_order")

    @property
    def second_order(self):
        return not self.first_order

    def adapt_task(self, weights, state, task, steps, differentiable):
        body = self._split.body_trainable
        support_loss = self.support_loss(task)

        def body_loss(body_weights, state, step):
            return support_loss(put(weights, body, body_weights), state, step)

        adapted, state = inner_loop.gradient_descent(
            body_loss,
            take(weights, body),
            state,
            steps,
            self.inner_lr,
            differentiable,
        )
        return put(weights, body, adapted), state

    def get_config(self):
        return {
            **super().get_config(),
            "head_layers": self.head_layers,
            "first_order": self.first_order,
        }
