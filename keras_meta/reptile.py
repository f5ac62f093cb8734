"""Reptile (Nichol, Achiam and Schulman, 2018)."""

import keras

from keras_meta import inner_loop
from keras_meta.meta_learner import MetaLearner

INNER_OPTIMIZERS = ("sgd", "adam")


@keras.saving.register_keras_serializable(package="keras_meta")
class Reptile(MetaLearner):
    """Reptile: move the initialisation towards each task's adapted weights.

    For each task, `inner_steps` steps of SGD (or of Adam with beta1 = 0, as in
    the paper) on its support set reach weights `W`; there is no outer tape.
    The gradient handed to the compiled optimizer is `phi - mean_tasks(W)`,
    so that `keras.optimizers.SGD(learning_rate=eps)` gives exactly the
    paper's update `phi <- phi + eps * (mean W - phi)`; any other Keras
    optimizer (Adam, as the paper's code uses) treats it as a gradient. The
    query set only serves the reported loss and metrics (after adaptation).

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: inner step size (the paper: Adam at 0.001).
        inner_steps: k, the inner steps during meta-training (k > 1: with a
            single step Reptile reduces to joint training).
        eval_inner_steps: inner steps at evaluation (the paper uses 50).
        inner_optimizer: `"sgd"` or `"adam"` (beta1 = 0, fresh state per task).
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=5,
        eval_inner_steps=None,
        inner_optimizer="sgd",
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        if inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got "
                f"{inner_optimizer!r}."
            )
        self.inner_optimizer = inner_optimizer

    def _adapt_task(
        self, weights, state, support_x, support_y, steps, differentiable
    ):
        descent = (
            inner_loop.adam_descent
            if self.inner_optimizer == "adam"
            else inner_loop.gradient_descent
        )
        kwargs = (
            {} if self.inner_optimizer == "adam" else {"differentiable": False}
        )
        return descent(
            self._support_loss_fn(support_x, support_y),
            weights,
            state,
            steps,
            self.inner_lr,
            **kwargs,
        )

    def _task_update(
        self, weights, state, support_x, support_y, query_x, query_y
    ):
        """The task's adapted weights W (no outer tape); the query set only
        gives the reported loss and predictions."""
        adapted, state = self._adapt_task(
            weights,
            state,
            support_x,
            support_y,
            self.inner_steps,
            differentiable=False,
        )
        y_pred, state = self._forward(adapted, state, query_x)
        return adapted, self.task_loss(query_y, y_pred), y_pred, state

    def _meta_gradients(self, weights, task_means):
        """`phi - mean_tasks(W)`: with SGD(eps), `phi + eps (mean W - phi)`."""
        return [w - mean for w, mean in zip(weights, task_means)]

    def get_config(self):
        return {**super().get_config(), "inner_optimizer": self.inner_optimizer}
