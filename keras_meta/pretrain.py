"""The pre-training baseline: joint training, then per-task fine-tuning."""

import keras
import tensorflow as tf

from keras_meta import compat, config, inner_loop
from keras_meta.checks import check_count
from keras_meta.engine import MetaLearner
from keras_meta.learner_parts import (
    BatchNormStatistics,
    LearnerSplit,
    put,
    take,
)

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
        inner_lr: step size of the test-time adaptation.
        inner_steps: unused in training; defaults to `eval_inner_steps`.
        eval_inner_steps: steps of the test-time adaptation.
        ways: N of the N-way test tasks (required for `"fresh_head"`).
        adaptation: `"fresh_head"` or `"fine_tune"`.
    """

    second_order = False

    def __init__(
        self,
        learner,
        inner_lr=0.1,
        inner_steps: int | None = None,
        eval_inner_steps=100,
        ways=None,
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
        # A fresh head is fitted on the frozen body's features, the same
        # for every task: evaluation runs the tasks vectorized.
        self.vectorize_tasks = adaptation == "fresh_head"
        self.ways = None if ways is None else check_count(ways, "ways", 2)
        if adaptation == "fresh_head":
            self._init_fresh_head(learner)

    def _init_fresh_head(self, learner):
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
        self._split = LearnerSplit(learner, 1)
        if len(self._split.body.outputs[0].shape) != 2:
            raise ValueError(
                "The features before the learner's last Dense layer must "
                "be flat [batch, features]; got shape "
                f"{self._split.body.outputs[0].shape}. Add a Flatten or "
                "pooling layer before the head."
            )
        self._head = head
        self._body_batch_norm = BatchNormStatistics(self._split.body)
        self._head_indices = self._split.head_trainable

    @property
    def num_classes(self):
        if self.adaptation == "fresh_head":
            return self.ways
        return super().num_classes

    def prediction_spec(self, query_x):
        spec = super().prediction_spec(query_x)
        if self.adaptation == "fine_tune":
            return spec
        return tf.TensorSpec(spec.shape[:-1] + [self.ways], spec.dtype)

    # -- test-time adaptation -------------------------------------------

    def _features(self, weights, state, x, reference_x=None):
        """Body features of `x`; normalised with the batch-norm statistics
        of `reference_x` if given (non-transductive), else of `x`."""
        split = self._split
        body_weights = take(weights, split.body_trainable)
        body_state = take(state["learner"], split.body_non_trainable)
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

    def adapt_task(self, weights, state, task, steps, differentiable):
        if self.adaptation == "fine_tune":
            return inner_loop.gradient_descent(
                self.support_loss(task),
                weights,
                state,
                steps,
                self.inner_lr,
                differentiable,
            )
        features = self._features(weights, state, task.support_x)
        head = [
            tf.zeros([features.shape[-1], self.ways], features.dtype),
            tf.zeros([self.ways], features.dtype),
        ]

        def head_loss(head_weights, head_state, step):
            logits = self._head_logits(features, *head_weights)
            return self.task_loss(task.support_y, logits), head_state

        head, state = inner_loop.gradient_descent(
            head_loss, head, state, steps, self.inner_lr, differentiable=False
        )
        return put(weights, self._head_indices, head), state

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        if self.adaptation == "fine_tune":
            return super().predict_task(
                weights, state, task, steps, differentiable, transductive
            )
        weights, state = self.adapt_task(
            weights, state, task, steps, differentiable
        )
        features = self._features(
            weights,
            state,
            task.query_x,
            reference_x=None if transductive else task.support_x,
        )
        kernel, bias = take(weights, self._head_indices)
        return self._head_logits(features, kernel, bias), state, []

    def adapted_learner(self, support_x, support_y, steps=None):
        if self.adaptation == "fine_tune":
            return super().adapted_learner(support_x, support_y, steps)
        kernel, bias = take(
            self.adapt(support_x, support_y, steps), self._head_indices
        )
        body = keras.models.clone_model(self._split.body)
        body.set_weights(self._split.body.get_weights())
        statistics = self._body_batch_norm.of(
            self._split.body,
            [tf.convert_to_tensor(v) for v in body.trainable_variables],
            [tf.convert_to_tensor(v) for v in body.non_trainable_variables],
            tf.convert_to_tensor(support_x),
        )
        for variable, value in zip(body.non_trainable_variables, statistics):
            variable.assign(value)
        head = keras.layers.Dense(
            self.ways, activation=self._head.activation, name="fresh_head"
        )
        model = keras.Model(body.inputs, head(body.outputs[0]))
        head.set_weights([kernel.numpy(), bias.numpy()])
        return model

    # -- training ---------------------------------------------------------

    def _check_first_batch(self, x, y=None, sample_weight=None):
        if isinstance(x, dict):
            super()._check_first_batch(x, y, sample_weight)
        # Otherwise ordinary (x, y) batches for joint training.

    def train_step(self, data):
        """One step of joint training on `(x, y)` (or pooled episodes)."""
        config.warn_if_threads_set_at_import(type(self).__name__)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            episode = self.episode(x, y, sample_weight)
            x = tf.concat([episode.support_x, episode.query_x], axis=1)
            y = tf.concat(
                [
                    episode.support_y,
                    tf.cast(episode.query_y, episode.support_y.dtype),
                ],
                axis=1,
            )
            x = tf.reshape(x, [-1] + x.shape[2:].as_list())
            y = tf.reshape(y, [-1] + y.shape[2:].as_list())
            sample_weight = None
        with tf.GradientTape() as tape:
            y_pred = self.learner(x, training=True)
            loss = self.task_loss(y, y_pred, sample_weight, self.learner.losses)
        variables = self.learner.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        compat.loss_tracker(self).update_state(
            loss, sample_weight=tf.shape(y_pred)[0]
        )
        return self.logs_for_workers(
            self.compute_metrics(x, y, y_pred, sample_weight)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "ways": self.ways,
            "adaptation": self.adaptation,
        }
