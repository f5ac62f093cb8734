"""The pre-training baseline: joint training, then per-task fine-tuning."""

import keras
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.meta_learner import MetaLearner, _as_int

ADAPTATIONS = ("fresh_head", "fine_tune")


@keras.saving.register_keras_serializable(package="keras_meta")
class Pretrain(MetaLearner):
    """Plain joint training of the learner, evaluated on episodes.

    Training (`fit`) is ordinary supervised learning on `(x, y)` batches of
    all meta-training classes, with global class ids `0..C-1` and a `C`-way
    learner. Given episode dicts instead, it trains jointly on the pooled
    support and query examples of all tasks: the MAML paper's pre-trained
    baseline for sinusoid regression.

    Evaluation (`evaluate`, `predict`, `model(x)`, `adapt`) adapts to each
    task with `eval_inner_steps` gradient steps of size `inner_lr`:

    - `adaptation="fresh_head"` (classification): the learner's last layer
      (a Dense layer) is replaced by a fresh, zero-initialised `ways`-way
      linear head fitted on the support features of the frozen body.
      `adapt` then returns the learner's weights with that layer's kernel
      `[features, ways]` and bias `[ways]` in place of its own.
    - `adaptation="fine_tune"`: all weights are fine-tuned, as MAML's inner
      loop does (use it for regression, where the head keeps its shape).

    Args:
        learner: a built `keras.Model`; for `"fresh_head"`, ending in Dense.
        ways: N of the N-way test tasks (required for `"fresh_head"`).
        inner_lr: step size of the test-time adaptation.
        inner_steps: unused in training; defaults to `eval_inner_steps`.
        eval_inner_steps: steps of the test-time adaptation.
        adaptation: `"fresh_head"` or `"fine_tune"`.
    """

    def __init__(
        self,
        learner,
        ways=None,
        inner_lr=0.01,
        inner_steps=None,
        eval_inner_steps=100,
        adaptation="fresh_head",
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=(
                eval_inner_steps if inner_steps is None else inner_steps
            ),
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        if adaptation not in ADAPTATIONS:
            raise ValueError(
                f"adaptation must be one of {ADAPTATIONS}, got {adaptation!r}."
            )
        self.adaptation = adaptation
        self.ways = None if ways is None else _as_int(ways, "ways", 2)
        if adaptation == "fresh_head":
            if self.ways is None:
                raise ValueError(
                    "Pretrain(adaptation='fresh_head') fits a new N-way head "
                    "on each test task, so it needs ways=N (for example "
                    "ways=5 for 5-way tasks)."
                )
            head = learner.layers[-1]
            if not isinstance(head, keras.layers.Dense) or not head.use_bias:
                raise TypeError(
                    "Pretrain(adaptation='fresh_head') replaces the learner's "
                    "last layer, which must be a keras.layers.Dense with a "
                    f"bias; got {type(head).__name__}. End the learner with "
                    "Dense, or use adaptation='fine_tune'."
                )
            self._split = inner_loop.LearnerSplit(learner, 1)
            if len(self._split.body.outputs[0].shape) != 2:
                raise ValueError(
                    "The features before the learner's last Dense layer must "
                    "be flat [batch, features]; got shape "
                    f"{self._split.body.outputs[0].shape}. Add a Flatten or "
                    "pooling layer before the head."
                )
            self._head = head
            self._body_batch_norm = inner_loop.BatchNormStatistics(
                self._split.body
            )
            self._kernel_index, self._bias_index = inner_loop.variable_indices(
                [head.kernel, head.bias], learner.trainable_variables
            )

    def _num_classes(self):
        if self.adaptation == "fresh_head":
            return self.ways
        return super()._num_classes()

    # -- test-time adaptation -------------------------------------------

    def _features(self, weights, state, x, reference_x=None):
        """Body features of `x`; normalised with the batch-norm statistics
        of `reference_x` if given (non-transductive), else of `x`."""
        split = self._split
        body_weights = inner_loop.take(weights, split.body_trainable)
        body_state = inner_loop.take(state, split.body_non_trainable)
        if reference_x is not None:
            features = self._body_batch_norm.call(
                split.body, body_weights, body_state, x, reference_x
            )
        else:
            features, _ = split.body.stateless_call(
                body_weights, body_state, x, training=True
            )
        return tf.stop_gradient(features)

    def _head_logits(self, features, kernel, bias):
        return self._head.activation(keras.ops.matmul(features, kernel) + bias)

    def _adapt_task(
        self, weights, state, support_x, support_y, steps, differentiable
    ):
        if self.adaptation == "fine_tune":
            return inner_loop.gradient_descent(
                self._support_loss_fn(support_x, support_y),
                weights,
                state,
                steps,
                self.inner_lr,
                differentiable,
            )
        features = self._features(weights, state, support_x)
        dim = features.shape[-1]
        head = [
            tf.zeros([dim, self.ways], features.dtype),
            tf.zeros([self.ways], features.dtype),
        ]

        def head_loss(head_weights, head_state):
            logits = self._head_logits(features, *head_weights)
            return self.task_loss(support_y, logits), head_state

        (kernel, bias), state = inner_loop.gradient_descent(
            head_loss, head, state, steps, self.inner_lr, differentiable=False
        )
        indices = [self._kernel_index, self._bias_index]
        return inner_loop.put(weights, indices, [kernel, bias]), state

    def _task_predictions(
        self,
        weights,
        state,
        support_x,
        support_y,
        query_x,
        steps,
        differentiable=False,
        transductive=True,
    ):
        if self.adaptation == "fine_tune":
            return super()._task_predictions(
                weights,
                state,
                support_x,
                support_y,
                query_x,
                steps,
                differentiable,
                transductive,
            )
        weights, state = self._adapt_task(
            weights, state, support_x, support_y, steps, differentiable
        )
        logits = self._head_logits(
            self._features(
                weights,
                state,
                query_x,
                reference_x=None if transductive else support_x,
            ),
            weights[self._kernel_index],
            weights[self._bias_index],
        )
        return logits, state

    def _query_spec(self, query_x):
        spec = super()._query_spec(query_x)
        if self.adaptation == "fine_tune":
            return spec
        return tf.TensorSpec(spec.shape[:-1] + [self.ways], spec.dtype)

    # -- training ---------------------------------------------------------

    def _check_sample(self, x, y=None):
        if isinstance(x, dict):
            super()._check_sample(x, y)
        # Otherwise ordinary (x, y) batches for joint training.

    def train_step(self, data):
        """One step of joint training on `(x, y)` (or pooled episodes)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            support_x, support_y, query_x = self._unpack_episodes(x)
            x = tf.concat([support_x, query_x], axis=1)
            y = tf.concat([support_y, tf.cast(y, support_y.dtype)], axis=1)
            x = tf.reshape(x, [-1] + x.shape[2:].as_list())
            y = tf.reshape(y, [-1] + y.shape[2:].as_list())
        with tf.GradientTape() as tape:
            y_pred = self.learner(x, training=True)
            loss = self.task_loss(y, y_pred)
            if self.learner.losses:
                loss = loss + tf.add_n(self.learner.losses)
        variables = self.learner.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update_metrics(x, y, y_pred, loss, tf.shape(y_pred)[0])

    def get_config(self):
        return {
            **super().get_config(),
            "ways": self.ways,
            "adaptation": self.adaptation,
        }
