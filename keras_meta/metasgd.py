"""Meta-SGD (Li, Zhou, Chen and Li, 2017): learned per-parameter step sizes."""

import keras
import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.checks import check_bool
from keras_meta.engine import MetaLearner
from keras_meta.learner_parts import add_weight_holding


@keras.saving.register_keras_serializable(package="keras_meta")
class MetaSGD(MetaLearner):
    """MAML whose inner step size is learned, one for every parameter.

    The inner loop is `w <- w - a * dL/dw` with `a` a tensor of each
    weight's shape (`inner_lrs`, initialised to `inner_lr`); `a` is
    meta-learned with the initialisation, so the optimizer updates both.
    With `first_order=True` the inner gradients are constants to the outer
    tape, but the rates still get their gradient `-g_support * g_query`.

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: initial value of every learned rate.
        inner_steps, eval_inner_steps: as for `MAML` (the paper: 1).
        first_order: drop the second-order terms through the steps.

    Attributes:
        inner_lrs: list of variables aligned with
            `learner.trainable_variables`, each of its weight's shape.
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps: int | None = None,
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
        self.first_order = check_bool(first_order, "first_order")
        self.inner_lrs = [
            add_weight_holding(
                self,
                np.full(v.shape, self.inner_lr),
                f"inner_lr_{i}_{v.name}",
                v.dtype,
            )
            for i, v in enumerate(learner.trainable_variables)
        ]

    @property
    def second_order(self):
        return not self.first_order

    @property
    def own_meta_variables(self):
        return list(self.inner_lrs)

    def adapt_task(self, weights, state, task, steps, differentiable):
        rates = [tf.convert_to_tensor(r) for r in self.inner_lrs]
        return inner_loop.gradient_descent(
            self.support_loss(task),
            weights,
            state,
            steps,
            rates,
            differentiable,
        )

    def learned_rate_summary(self):
        """`{"inner_lr/<weight>": mean rate}`, for logging."""
        return {
            f"inner_lr/{v.path}": float(np.mean(rate.numpy()))
            for v, rate in zip(self.learner.trainable_variables, self.inner_lrs)
        }

    def get_config(self):
        return {**super().get_config(), "first_order": self.first_order}
