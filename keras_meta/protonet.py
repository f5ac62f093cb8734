"""Prototypical Networks (Snell, Swersky and Zemel, 2017) and Proto-MAML
(Triantafillou et al., ICLR 2020): classification by distance to each
class's mean support embedding, with or without inner steps after it."""

import keras
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.checks import check_bool, check_count
from keras_meta.engine import MetaLearner


def prototype_head(embeddings, labels, ways):
    """The linear head whose logits rank classes as the distance to their
    prototypes (mean support embeddings `c_k`) does: kernel `[d, ways]`
    with columns `2 c_k`, bias `-|c_k|^2`, and which of the `ways` classes
    the support set has (`[ways]` bool). `z . 2c - |c|^2 = -|z - c|^2 +
    |z|^2`: the logits are minus the squared distances, up to a constant
    per query, which no softmax sees."""
    one_hot = tf.one_hot(labels, ways, dtype=embeddings.dtype)
    counts = tf.reduce_sum(one_hot, axis=0)
    sums = tf.matmul(one_hot, embeddings, transpose_a=True)
    prototypes = sums / tf.maximum(counts, 1.0)[:, None]
    kernel = 2.0 * tf.transpose(prototypes)
    bias = -tf.reduce_sum(tf.square(prototypes), axis=1)
    return kernel, bias, counts > 0


def masked_logits(features, kernel, bias, present):
    """`features @ kernel + bias`, with classes the task lacks at the most
    negative value the dtype holds by half (no probability, no gradient)."""
    logits = tf.matmul(features, kernel) + bias
    floor = tf.cast(logits.dtype.min / 2, logits.dtype)
    return tf.where(present[None, :], logits, floor)


def flat(x):
    """`[B, ...]` embeddings as `[B, features]`."""
    return tf.reshape(x, [tf.shape(x)[0], -1])


class PrototypeLearner(MetaLearner):
    """What ProtoNet and Proto-MAML share: an embedding learner, tasks of
    up to `ways` classes, and a linear head made from prototypes.

    The learner's output is an embedding (for conv4, its features without
    the head: `keras_meta.models.conv4(ways=None)`), so the number of
    classes is a task's, at most `ways`: a model trained on 20-way tasks
    classifies 5-way ones (`fixed_ways = False`; the checks of a classifier
    whose outputs must equal the episodes' ways stand aside).
    """

    fixed_ways = False

    def _init_ways(self, learner, ways):
        if ways is None:
            raise ValueError(
                f"{type(self).__name__} needs ways=N, the most classes a "
                "task may have (the training tasks' N when they have more)."
            )
        self.ways = check_count(ways, "ways", minimum=2)
        head = learner.layers[-1]
        if head.name == "head" and isinstance(head, keras.layers.Dense):
            raise ValueError(
                f"{type(self).__name__} takes an embedding learner, but this "
                "one ends in a classifier head (its last layer, 'head', is "
                "Dense): build it without, for example "
                "keras_meta.models.conv4(ways=None)."
            )

    @property
    def num_classes(self):
        return self.ways

    def prediction_spec(self, query_x):
        return tf.TensorSpec(
            [query_x.shape[1], self.ways], self.learner.outputs[0].dtype
        )

    def embed(self, weights, state, x, transductive=True, reference_x=None):
        """`(embeddings [B, d], state)` of `x`: with the batch's own
        batch-norm statistics, or (not `transductive`) with those of
        `reference_x` (the support set), in inference mode."""
        if transductive or reference_x is None:
            z, state, _ = self.forward(weights, state, x)
            return flat(z), state
        z = self._batch_norm.call(
            self.learner, weights, state["learner"], x, reference_x
        )
        return flat(z), state

    def head_of(self, weights, state, task):
        """The prototype head of `task` from fast `weights`:
        `(kernel, bias, present, state)`."""
        support, state = self.embed(weights, state, task.support_x)
        kernel, bias, present = prototype_head(
            support, task.support_y, self.ways
        )
        return kernel, bias, present, state

    def fine_tuned_head(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        adapted=None,
        learning_rate=None,
    ):
        """The prototype head of `task`, then `steps` gradient steps on the
        support loss of it and the learner weights at `adapted` (indices;
        default all), of `learning_rate` (default `inner_lr`): Proto-MAML's
        inner loop, and the analyses' freezing ablation.

        Returns:
            `(weights, kernel [d, ways], bias [ways], present [ways], state)`.
        """
        kernel, bias, present, state = self.head_of(weights, state, task)
        count = len(weights)
        if adapted is not None:  # and always the head
            adapted = [*adapted, count, count + 1]

        def loss(all_weights, state, step):
            z, state, losses = self.forward(
                all_weights[:count], state, task.support_x
            )
            logits = masked_logits(flat(z), *all_weights[count:], present)
            return self.task_loss(task.support_y, logits, None, losses), state

        moved, state = inner_loop.gradient_descent(
            loss,
            [*weights, kernel, bias],
            state,
            check_count(steps, "steps"),
            self.inner_lr if learning_rate is None else learning_rate,
            differentiable,
            adapted=adapted,
        )
        kernel, bias = moved[count:]
        return moved[:count], kernel, bias, present, state

    def adapted_learner(self, support_x, support_y, steps=None):
        """A Keras classifier for ONE task: the adapted embedding learner
        and a linear head of its (adapted) prototype head, so that its
        logits rank the classes as the model does (up to a constant per
        example); classes the support set lacks get no probability."""
        task = self._one_task(support_x, support_y, support_x)
        steps = self.eval_inner_steps if steps is None else steps
        weights, state = self.weights_and_state()
        weights, kernel, bias, present, _ = self.adapted_head(
            weights, state, task, steps
        )
        embedding = super().adapted_learner(support_x, support_y, steps)
        for variable, value in zip(embedding.trainable_variables, weights):
            variable.assign(value)
        inputs = keras.Input(embedding.input_shape[1:])
        features = keras.layers.Flatten()(embedding(inputs))
        head = keras.layers.Dense(self.ways, name="prototype_head")
        outputs = head(features)
        floor = bias.dtype.min / 2
        head.set_weights([kernel.numpy(), tf.where(present, bias, floor)])
        return keras.Model(inputs, outputs, name=f"{self.name}_adapted")


@keras.saving.register_keras_serializable(package="keras_meta")
class ProtoNet(PrototypeLearner):
    """Prototypical Networks: no inner loop; each query's logits are minus
    its squared Euclidean distance to each class's mean support embedding.

    Meta-training descends the query loss through the embedding. Support
    and query sets are embedded apart, each batch normalised with its own
    statistics (transductive, as every meta-learner here), or the queries
    with the support set's (`bn_mode="non_transductive"`); Snell et al.'s
    code embeds both in one batch in training and uses running statistics
    at test.

    Args:
        learner: a built `keras.Model` that maps `[B, ...]` to embeddings
            `[B, d]` (or feature maps, flattened), such as
            `keras_meta.models.conv4(ways=None)`.
        ways: the most classes a task may have: the training tasks' N
            (Snell et al. train Omniglot on 60-way tasks to test 5- and
            20-way ones).
        bn_mode: as for `MetaLearner`.
    """

    second_order = False

    def __init__(self, learner, ways=None, bn_mode="transductive", name=None):
        super().__init__(
            learner,
            inner_lr=1.0,  # no inner loop
            inner_steps=0,
            eval_inner_steps=0,
            bn_mode=bn_mode,
            name=name,
        )
        self._init_ways(learner, ways)

    def adapt_task(self, weights, state, task, steps, differentiable):
        return weights, state  # nothing adapts: the prototypes are the task

    def adapted_head(self, weights, state, task, steps):
        kernel, bias, present, state = self.head_of(weights, state, task)
        return weights, kernel, bias, present, state

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        kernel, bias, present, state = self.head_of(weights, state, task)
        query, state = self.embed(
            weights, state, task.query_x, transductive, task.support_x
        )
        distance = tf.reduce_sum(tf.square(query), axis=1, keepdims=True)
        logits = masked_logits(query, kernel, bias, present) - distance
        return logits, state, []

    def get_config(self):
        return {
            "name": self.name,
            "learner": keras.saving.serialize_keras_object(self.learner),
            "ways": self.ways,
            "bn_mode": self.bn_mode,
        }


@keras.saving.register_keras_serializable(package="keras_meta")
class ProtoMAML(PrototypeLearner):
    """Proto-MAML: MAML whose linear head starts each task at the prototype
    classifier (class k: weights `2 c_k`, bias `-|c_k|^2`), then takes
    inner steps on the embedding and that head together. The meta-gradient
    goes through the steps and through the prototypes the head started
    from. With no inner steps it classifies as ProtoNet does; the head's
    start removes MAML's dependence on the order of a task's labels.

    Args:
        learner: a built embedding `keras.Model`, as for `ProtoNet`.
        ways: the most classes a task may have.
        inner_lr, inner_steps, eval_inner_steps: as for `MAML`.
        first_order: drop the second-order terms of the meta-gradient (the
            first-order Proto-MAML of Triantafillou et al.).
    """

    def __init__(
        self,
        learner,
        ways=None,
        inner_lr=0.4,
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
        self._init_ways(learner, ways)
        self.first_order = check_bool(first_order, "first_order")

    @property
    def second_order(self):
        return not self.first_order

    def adapted_head(self, weights, state, task, steps, differentiable=False):
        """`steps` inner steps on the embedding and the prototype head:
        `(weights, kernel, bias, present, state)`."""
        return self.fine_tuned_head(weights, state, task, steps, differentiable)

    def adapt_task(self, weights, state, task, steps, differentiable):
        weights, _, _, _, state = self.adapted_head(
            weights, state, task, steps, differentiable
        )
        return weights, state

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        weights, kernel, bias, present, state = self.adapted_head(
            weights, state, task, steps, differentiable
        )
        query, state = self.embed(
            weights, state, task.query_x, transductive, task.support_x
        )
        return masked_logits(query, kernel, bias, present), state, []

    def get_config(self):
        return {
            **super().get_config(),
            "ways": self.ways,
            "first_order": self.first_order,
        }
