"""MAML (Finn et al., ICML 2017) and its first-order approximation."""

import keras

from keras_meta import inner_loop
from keras_meta.checks import check_bool
from keras_meta.engine import MetaLearner


@keras.saving.register_keras_serializable(package="keras_meta")
class MAML(MetaLearner):
    """Model-Agnostic Meta-Learning.

    The inner loop adapts every trainable variable of the learner with plain
    gradient steps on a task's support loss; the meta-loss is the mean query
    loss after adaptation over the tasks of a meta-batch, and its gradient
    goes back through the inner steps (nested `tf.GradientTape`s), so it
    holds the second-order terms `d(adapted)/d(initial)`. With
    `first_order=True` those terms are dropped: the meta-gradient is the
    query-loss gradient at the adapted weights (FOMAML).

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: inner-loop step size (the paper's alpha: 0.4 for Omniglot
            5-way, 0.01 for Mini-ImageNet and sinusoid regression).
        inner_steps: inner steps during meta-training.
        eval_inner_steps: inner steps at evaluation (default `inner_steps`).
        first_order: drop the second-order terms of the meta-gradient.
        recompute: rematerialise the inner steps' activations during the
            meta-gradient instead of keeping them (second order only), so
            memory stays flat as `inner_steps` grows, for one more forward
            and backward pass per step. The meta-gradient is unchanged.
            `"auto"` (default) recomputes when `inner_steps > 1`, where it
            is about as fast and lighter (`benchmarks/README.md`).

    Example:

    ```python
    maml = keras_meta.MAML(keras_meta.models.conv4(ways=5), inner_lr=0.4)
    maml.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    maml.fit(train_episodes, steps_per_epoch=100, epochs=10)
    ```
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps: int | None = None,
        first_order=False,
        recompute: bool | str = "auto",
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        if not (isinstance(recompute, bool) or recompute == "auto"):
            raise TypeError(
                f'recompute must be True, False or "auto", got {recompute!r}.'
            )
        self.first_order = check_bool(first_order, "first_order")
        self.recompute = recompute

    @property
    def second_order(self):
        return not self.first_order

    def adapt_task(self, weights, state, task, steps, differentiable):
        recompute = self.recompute
        if recompute == "auto":
            recompute = self.inner_steps > 1
        return inner_loop.gradient_descent(
            self.support_loss(task),
            weights,
            state,
            steps,
            self.inner_lr,
            differentiable,
            recompute=recompute,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "first_order": self.first_order,
            "recompute": self.recompute,
        }
