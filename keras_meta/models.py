"""Learners of the papers: the 4-block convnet and the sinusoid MLP."""

import keras

from keras_meta.layers import BatchNormalization

POOLINGS = ("max", "stride", "stride_flatten")


def conv4(
    ways, input_shape=(28, 28, 1), filters=64, pooling="max", name="conv4"
):
    """The 4-block convolutional learner of Finn et al. (2017).

    Each block is a 3x3 convolution with `filters` channels, batch-norm (on
    TensorFlow's fused kernel: `keras_meta.layers.BatchNormalization`), ReLU
    and 2x2 max-pooling; a linear `ways`-way head gives logits.
    `pooling="stride"` is the paper's Omniglot variant: stride-2 convolutions
    instead of max-pooling, then the mean over the remaining spatial
    positions, as MAML's reference code does. `pooling="stride_flatten"`
    flattens them instead (2x2x64 = 256 features for Omniglot), as the
    Reptile authors' Omniglot model does.

    Args:
        ways: number of classes N (the head's outputs).
        input_shape: `(height, width, channels)`; 28x28x1 for Omniglot,
            84x84x3 for Mini-ImageNet.
        filters: channels per block (64 for Omniglot, 32 for Mini-ImageNet).
        pooling: `"max"`, `"stride"` or `"stride_flatten"`.

    Returns:
        A functional `keras.Model` mapping `[B, H, W, C]` to logits `[B, ways]`.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if not isinstance(ways, int) or ways < 2:
        raise ValueError(f"ways must be an int >= 2, got {ways!r}.")
    if len(input_shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels), got "
            f"{input_shape!r}."
        )
    strides = 1 if pooling == "max" else 2
    inputs = keras.Input(input_shape, name="images")
    hidden = inputs
    for block in range(4):
        hidden = keras.layers.Conv2D(
            filters,
            3,
            strides=strides,
            padding="same",
            name=f"block{block + 1}_conv",
        )(hidden)
        hidden = BatchNormalization(name=f"block{block + 1}_bn")(hidden)
        hidden = keras.layers.ReLU(name=f"block{block + 1}_relu")(hidden)
        if pooling == "max":
            hidden = keras.layers.MaxPooling2D(
                2, name=f"block{block + 1}_pool"
            )(hidden)
    if pooling != "stride":
        features = keras.layers.Flatten(name="features")(hidden)
    else:
        features = keras.layers.GlobalAveragePooling2D(name="features")(hidden)
    logits = keras.layers.Dense(ways, name="head")(features)
    return keras.Model(inputs, logits, name=name)


def mlp(output_units=1, hidden_units=(40, 40), input_shape=(1,), name="mlp"):
    """The sinusoid-regression learner of Finn et al.: ReLU MLP, linear out.

    Returns a functional `keras.Model` mapping `[B, *input_shape]` to
    `[B, output_units]`.
    """
    inputs = keras.Input(input_shape, name="inputs")
    hidden = inputs
    for i, units in enumerate(hidden_units):
        hidden = keras.layers.Dense(
            units, activation="relu", name=f"hidden{i + 1}"
        )(hidden)
    outputs = keras.layers.Dense(output_units, name="head")(hidden)
    return keras.Model(inputs, outputs, name=name)
