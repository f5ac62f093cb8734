"""Views of a learner: body and head, batch-norm statistics, and slices of
its variable lists.

Fast weights are lists aligned with `learner.trainable_variables` (state:
with `learner.non_trainable_variables`); these helpers slice and patch them
for a sub-model, so any algorithm can adapt part of a learner.
"""

import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_meta import compat
from keras_meta.layers import BatchNormalization


def add_weight_holding(model, value, name, dtype, trainable=True):
    """A new weight of `model` that starts as `value` (and has its shape):
    an algorithm's own variables, such as a learned rate or a copy per inner
    step of a learner variable."""
    value = np.asarray(value)
    weight = model.add_weight(
        shape=value.shape,
        initializer="zeros",
        name=name,
        trainable=trainable,
        dtype=dtype,
    )
    weight.assign(value)
    return weight


def take(values, indices):
    """`values` at `indices`: a sub-model's slice of the learner's lists."""
    return [values[i] for i in indices]


def put(values, indices, parts):
    """A copy of `values` with `parts` written at `indices`."""
    values = list(values)
    for i, part in zip(indices, parts):
        values[i] = part
    return values


def variable_indices(subset, variables):
    """Positions of each variable of `subset` in `variables` (by identity)."""
    position = {id(v): i for i, v in enumerate(variables)}
    try:
        return [position[id(v)] for v in subset]
    except KeyError as e:
        raise ValueError(
            "A sub-model's variable is not a variable of the learner; the "
            "learner's last layers must be its own layers."
        ) from e


class LearnerSplit:
    """A learner viewed as `body` (all but its last layers) and `head`.

    `body` and `head` are Keras models that share the learner's layers and
    variables: `head(body(x))` computes `learner(x)`. The index lists say
    where each sub-model's variables sit in the learner's variable lists, so
    that fast weights for the whole learner can be sliced for either part.
    `segments_apply` says whether the body may run once on several sets
    stacked (`keras_meta.layers.batch_segments`) with the numbers of a call
    per set.

    This is a plain Python object on purpose: Keras does not track it, so the
    shared layers are saved once, as part of the learner.
    """

    def __init__(self, learner, head_layers):
        if not isinstance(head_layers, int) or head_layers < 1:
            raise ValueError(
                f"head_layers must be a positive int, got {head_layers!r}."
            )
        layers = [
            layer
            for layer in learner.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        if head_layers >= len(layers):
            raise ValueError(
                f"head_layers={head_layers} leaves no body: the learner has "
                f"{len(layers)} layers. Use a smaller head_layers."
            )
        try:
            boundary = layers[-head_layers - 1].output
            self.body = keras.Model(learner.inputs, boundary)
            self.head = keras.Model(boundary, learner.outputs)
        except Exception as e:  # Keras raises several types here.
            raise ValueError(
                "Cannot split the learner into body and head at its last "
                f"{head_layers} layer(s): the head must be a chain of the "
                "learner's last layers, fed only by the layer before them "
                f"(Sequential or functional). Keras said: {e}"
            ) from e
        self.body_trainable = variable_indices(
            self.body.trainable_variables, learner.trainable_variables
        )
        self.head_trainable = variable_indices(
            self.head.trainable_variables, learner.trainable_variables
        )
        self.body_non_trainable = variable_indices(
            self.body.non_trainable_variables, learner.non_trainable_variables
        )
        self.head_non_trainable = variable_indices(
            self.head.non_trainable_variables, learner.non_trainable_variables
        )
        if not self.head_trainable:
            raise ValueError(
                f"The learner's last {head_layers} layer(s) have no trainable "
                "variables, so there is nothing to adapt: increase head_layers."
            )
        body_layers = compat.flatten_layers(self.body)
        # Whether one body call on [support; query] under
        # `keras_meta.layers.batch_segments` equals a call per set: every
        # batch norm of the body is keras-meta's, and no activity regulariser
        # sees the two sets as one batch.
        self.segments_apply = not any(
            is_keras_batch_norm(layer)
            or getattr(layer, "activity_regularizer", None) is not None
            for layer in body_layers
        )


class BatchNormStatistics:
    """Runs a model with batch-norm statistics taken from another batch.

    Keras's `BatchNormalization` normalises with the batch's own statistics
    in training mode and with its moving statistics in inference mode. To
    classify a query set with the statistics of the support set alone (the
    non-transductive protocol), this runs the support set in training mode
    from zeroed moving statistics: one momentum update then leaves exactly
    `(1 - momentum) * batch statistic` in each moving variable, layer by
    layer, which it rescales and hands to an inference-mode call.
    """

    def __init__(self, model):
        variables = model.non_trainable_variables
        self.layers = []
        for layer in compat.flatten_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                mean, variance = variable_indices(
                    [layer.moving_mean, layer.moving_variance], variables
                )
                self.layers.append((mean, variance, layer.momentum))

    def of(self, model, weights, state, x):
        """The state whose moving statistics are the batch statistics of
        `x` at every batch-norm layer of `model` run with `weights`."""
        probe = list(state)
        for mean, variance, _ in self.layers:
            probe[mean] = keras.ops.zeros_like(state[mean])
            probe[variance] = keras.ops.zeros_like(state[variance])
        _, updated = model.stateless_call(weights, probe, x, training=True)
        statistics = list(state)
        for mean, variance, momentum in self.layers:
            statistics[mean] = updated[mean] / (1.0 - momentum)
            statistics[variance] = updated[variance] / (1.0 - momentum)
        return [tf.stop_gradient(s) for s in statistics]

    def call(self, model, weights, state, x, reference_x):
        """`model(x)` normalised with the statistics of `reference_x`, in
        inference mode (so Dropout is off)."""
        if self.layers:
            state = self.of(model, weights, state, reference_x)
        y_pred, _ = model.stateless_call(weights, state, x, training=False)
        return y_pred


def is_keras_batch_norm(layer):
    """Whether `layer` is Keras's own batch norm, not keras-meta's (whose
    second derivatives are exact and which normalises `batch_segments`
    apart)."""
    return isinstance(layer, keras.layers.BatchNormalization) and not (
        isinstance(layer, BatchNormalization)
    )


def warn_if_inexact_batch_norm(layers):
    """Warns when a second-order meta-gradient goes through Keras's own
    `BatchNormalization`, whose second derivatives are inexact on the
    TensorFlow backend (`keras_meta.layers.BatchNormalization` says why).
    Runs as `train_step` is traced, so once per trace."""
    inexact = [layer.name for layer in layers if is_keras_batch_norm(layer)]
    if inexact:
        warnings.warn(
            f"The learner's batch norm {', '.join(inexact)} is "
            "keras.layers.BatchNormalization, whose second derivatives are "
            "inexact on TensorFlow (tf.nn.moments stops the gradient of the "
            "mean inside the variance), so this second-order meta-gradient "
            "through it is wrong (up to 36% per weight in keras-meta's "
            "tests). Build the learner with keras_meta.layers."
            "BatchNormalization (keras_meta.models.conv4 does), or train "
            "first-order.",
            stacklevel=2,
        )
