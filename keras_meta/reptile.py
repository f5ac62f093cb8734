"""Reptile (Nichol, Achiam and Schulman, 2018)."""

import keras
import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.checks import check_bool, check_count
from keras_meta.engine import MetaLearner, TaskUpdate
from keras_meta.learner_parts import add_weight_holding

INNER_OPTIMIZERS = ("sgd", "adam")


@keras.saving.register_keras_serializable(package="keras_meta")
class Reptile(MetaLearner):
    """Reptile: move the initialisation towards each task's adapted weights.

    For each task, `inner_steps` steps of SGD (or of Adam with beta1 = 0, as
    in the paper) on its support set reach weights `W`; there is no outer
    tape. The gradient handed to the compiled optimizer is
    `phi - mean_tasks(W)`, so that `keras.optimizers.SGD(learning_rate=eps)`
    gives exactly the paper's update `phi <- phi + eps * (mean W - phi)`. The
    query set only serves the reported loss and metrics (after adaptation).

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: inner step size (default the paper's: Adam at 0.001).
        inner_steps: k >= 1, the inner steps during meta-training (with one
            step Reptile reduces to joint training).
        eval_inner_steps: inner steps at evaluation (the paper's 50; None:
            `inner_steps`).
        inner_optimizer: `"adam"` (beta1 = 0, the paper's) or `"sgd"`.
        shared_adam_state: with Adam, whether its second moments and step
            count carry over from task to task, as in the authors' code
            (only the weights are reset per task there; Adam's state lives
            on): each task of a meta-batch starts from the stored state,
            which then becomes the mean of the tasks' final states (their
            sequential sharing, done in parallel). Evaluation starts from it
            too and leaves it unchanged. False: a fresh Adam state per
            task, which learns far worse on Omniglot (REPRODUCTION.md).
        inner_batch_size: support examples per inner step: each task's
            support set is shuffled and read in batches of this size,
            reshuffled when it runs out, as the authors' code does. None
            (default): the whole support set at every step.
    """

    second_order = False

    def __init__(
        self,
        learner,
        inner_lr=0.001,
        inner_steps=5,
        eval_inner_steps: int | None = 50,
        inner_optimizer="adam",
        inner_batch_size: int | None = None,
        shared_adam_state=True,
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        check_count(inner_steps, "inner_steps", minimum=1)
        if inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got "
                f"{inner_optimizer!r}."
            )
        self.inner_optimizer = inner_optimizer
        self.inner_batch_size = (
            None
            if inner_batch_size is None
            else check_count(inner_batch_size, "inner_batch_size", 1)
        )
        self.shared_adam_state = check_bool(
            shared_adam_state, "shared_adam_state"
        )
        # The shared Adam state: a second moment per trainable variable of
        # the learner, and the steps they have seen.
        self.adam_moments, self.adam_count = [], None
        if self.shared_adam_state and inner_optimizer == "adam":
            variables = learner.trainable_variables
            self.adam_moments = [
                add_weight_holding(
                    self,
                    np.zeros(v.shape),
                    f"{v.path.replace('/', '_')}_adam_moment",
                    v.dtype,
                    trainable=False,
                )
                for v in variables
            ]
            self.adam_count = add_weight_holding(
                self, 0.0, "adam_count", variables[0].dtype, trainable=False
            )

    @property
    def state_variables(self):
        """The learner's, and the shared Adam state (if any):
        `"adam_moments"` (aligned with the learner's trainable variables)
        and `"adam_count"`."""
        if self.adam_count is None:
            return super().state_variables
        return {
            **super().state_variables,
            "adam_moments": list(self.adam_moments),
            "adam_count": self.adam_count,
        }

    def _batches(self, task, steps):
        """`[steps, batch]` positions in the support set: shuffled passes
        over it, one batch per step."""
        size = tf.shape(task.support_x)[0]
        batch = self.inner_batch_size
        passes = (steps * batch + size - 1) // size
        seed = tf.zeros([2], tf.int32) if task.seed is None else task.seed
        noise = tf.random.stateless_uniform([passes, size], seed=seed)
        order = tf.reshape(tf.argsort(noise, axis=1), [-1])
        return tf.reshape(order[: steps * batch], [steps, batch])

    def _support_loss(self, task, steps):
        if self.inner_batch_size is None or steps == 0:
            return self.support_loss(task)
        batches = self._batches(task, steps)

        def loss(weights, state, step):
            positions = tf.gather(batches, step)
            batch = task._replace(
                support_x=tf.gather(task.support_x, positions),
                support_y=tf.gather(task.support_y, positions),
            )
            return self.support_loss(batch)(weights, state, step)

        return loss

    def adapt_task(self, weights, state, task, steps, differentiable):
        loss = self._support_loss(task, steps)
        if self.inner_optimizer == "adam":
            if self.adam_count is None:  # a fresh state for each task
                weights, state, _, _ = inner_loop.adam_descent(
                    loss, weights, state, steps, self.inner_lr
                )
                return weights, state
            weights, state, moments, count = inner_loop.adam_descent(
                loss,
                weights,
                state,
                steps,
                self.inner_lr,
                moments=state["adam_moments"],
                count=state["adam_count"],
            )
            return weights, {
                **state,
                "adam_moments": moments,
                "adam_count": count,
            }
        return inner_loop.gradient_descent(
            loss, weights, state, steps, self.inner_lr, differentiable=False
        )

    def task_update(self, weights, state, task):
        """The task's adapted weights W (no outer tape); the query set only
        gives the reported loss and predictions."""
        if task.sample_weight is not None:
            raise ValueError(
                "Reptile's update does not use the query loss, so "
                "sample_weight has no effect on it; leave it out."
            )
        adapted, state = self.adapt_task(
            weights, state, task, self.inner_steps, False
        )
        y_pred, state, losses = self.forward(adapted, state, task.query_x)
        loss = self.query_loss(task, y_pred, losses)
        return TaskUpdate(adapted, loss, y_pred, state)

    def meta_gradients(self, values, mean_update):
        """`phi - mean_tasks(W)`: with SGD(eps), `phi + eps (mean W - phi)`
        (scaled by the loss scale, which a `LossScaleOptimizer` divides
        out)."""
        return [
            self.scale_loss(w - mean) for w, mean in zip(values, mean_update)
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "inner_optimizer": self.inner_optimizer,
            "inner_batch_size": self.inner_batch_size,
            "shared_adam_state": self.shared_adam_state,
        }
