"""Single test tasks and the learner's weighted layers, for the analyses."""

import keras
import tensorflow as tf

from keras_meta.learner_parts import variable_indices


def weighted_layers(learner):
    return [
        layer
        for layer in learner.layers
        if layer.trainable_weights
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]


def probe_model(learner, layers):
    """A model from the learner's input to the outputs of `layers`, and
    where its variables sit in the learner's variable lists."""
    probe = keras.Model(learner.inputs, [layer.output for layer in layers])
    return (
        probe,
        variable_indices(
            probe.trainable_variables, learner.trainable_variables
        ),
        variable_indices(
            probe.non_trainable_variables, learner.non_trainable_variables
        ),
    )


def single_tasks(episodes, num_tasks):
    """Yields `(support_x, support_y, query_x, query_y)` of single tasks."""
    count = 0
    for x, y in episodes:
        for t in range(int(tf.shape(y)[0])):
            yield (x["support_x"][t], x["support_y"][t], x["query_x"][t], y[t])
            count += 1
            if count >= num_tasks:
                return
    if count < num_tasks:
        raise ValueError(
            f"The episodes ran out after {count} tasks; num_tasks="
            f"{num_tasks} needs a longer dataset."
        )
