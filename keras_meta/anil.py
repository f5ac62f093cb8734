"""ANIL: Almost No Inner Loop (Raghu et al., ICLR 2020)."""

import keras
import tensorflow as tf

from keras_meta import compat, inner_loop, layers
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
    the query features: second order in the head, as in the paper. When it
    predicts a task's queries (meta-training and evaluation), the body runs
    once over support and query together, each set still normalised by its
    own batch-norm statistics (`predict_task`).

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
        features, _, state = self._body(weights, state, task.support_x)
        return self._adapt_head(
            weights, state, features, task, steps, differentiable
        )

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        """As `MetaLearner.predict_task`, with the body run once, on the
        support and query images together (one larger batch), each set
        normalised by its own batch-norm statistics
        (`keras_meta.layers.batch_segments`): the same numbers as a call per
        set, in fewer ops. Where that cannot be guaranteed (a body with
        Keras's own batch norm or an activity regulariser, the
        non-transductive protocol) the body runs once per set."""
        if not (transductive and self._split.segments_apply):
            return super().predict_task(
                weights, state, task, steps, differentiable, transductive
            )
        sizes = [_rows(task.support_x), _rows(task.query_x)]
        with layers.batch_segments(sizes):
            features, body_losses, state = self._body(
                weights, state, tf.concat([task.support_x, task.query_x], 0)
            )
        support_features, query_features = tf.split(features, sizes)
        fast, state = self._adapt_head(
            weights, state, support_features, task, steps, differentiable
        )
        y_pred, state, head_losses = self._head(
            take(fast, self._split.head_trainable), state, query_features
        )
        return y_pred, state, [*body_losses, *head_losses]

    def _body(self, weights, state, x):
        """The body on `x [B, ...]` (training mode): `(features [B, ...],
        its regularisation losses, state with the body's part updated)`."""
        split = self._split
        features, body_state, losses = split.body.stateless_call(
            take(weights, split.body_trainable),
            take(state["learner"], split.body_non_trainable),
            x,
            training=True,
            return_losses=True,
        )
        return (
            features,
            losses,
            _with(state, split.body_non_trainable, body_state),
        )

    def _head(self, head_weights, state, features):
        """The head with `head_weights` on `features` (training mode):
        `(predictions, state with the head's part updated, its
        regularisation losses)`."""
        split = self._split
        y_pred, head_state, losses = split.head.stateless_call(
            head_weights,
            take(state["learner"], split.head_non_trainable),
            features,
            training=True,
            return_losses=True,
        )
        return (
            y_pred,
            _with(state, split.head_non_trainable, head_state),
            losses,
        )

    def _adapt_head(
        self, weights, state, features, task, steps, differentiable
    ):
        """`(fast weights, state)` after `steps` steps on the head alone, on
        the support `features`."""
        split = self._split

        def head_loss(head_weights, step_state, step):
            y_pred, step_state, losses = self._head(
                head_weights, step_state, features
            )
            loss = self.task_loss(task.support_y, y_pred, None, losses)
            return loss, step_state

        head_weights, state = inner_loop.gradient_descent(
            head_loss,
            take(weights, split.head_trainable),
            state,
            steps,
            self.inner_lr,
            differentiable,
        )
        return put(weights, split.head_trainable, head_weights), state

    def get_config(self):
        return {**super().get_config(), "head_layers": self.head_layers}


def _with(state, indices, values):
    """`state` with the learner's variables at `indices` set to `values`
    (never differentiated)."""
    values = [tf.stop_gradient(v) for v in values]
    return {**state, "learner": put(state["learner"], indices, values)}


def _rows(x):
    """The number of rows of `x`: static when known (XLA wants it so)."""
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
