"""Learners: the papers' 4-block convnet and sinusoid MLP, the few-shot
literature's ResNet-12, and any Keras backbone with a new head."""

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
        ways: number of classes N (the head's outputs), or None for no
            head: the features are the output (an embedding, for ProtoNet
            and Proto-MAML).
        input_shape: `(height, width, channels)`; 28x28x1 for Omniglot,
            84x84x3 for Mini-ImageNet.
        filters: channels per block (64 for Omniglot, 32 for Mini-ImageNet).
        pooling: `"max"`, `"stride"` or `"stride_flatten"`.

    Returns:
        A functional `keras.Model` mapping `[B, H, W, C]` to logits `[B, ways]`.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    _check_ways_and_shape(ways, input_shape)
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
    if ways is None:
        return keras.Model(inputs, features, name=name)
    logits = keras.layers.Dense(ways, name="head")(features)
    return keras.Model(inputs, logits, name=name)


def _check_ways_and_shape(ways, input_shape):
    if ways is not None and (not isinstance(ways, int) or ways < 2):
        raise ValueError(f"ways must be an int >= 2 or None, got {ways!r}.")
    if len(input_shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels), got "
            f"{input_shape!r}."
        )


def resnet12(
    ways,
    input_shape=(84, 84, 3),
    channels=(64, 160, 320, 640),
    name="resnet12",
):
    """ResNet-12 as the few-shot literature defines it (Lee et al. 2019,
    MetaOptNet; Oreshkin et al. 2018, TADAM, with channels 64-128-256-512).

    Four residual blocks, each three 3x3 convolutions with batch norm (on
    the fused kernel, with exact second derivatives) and LeakyReLU(0.1), a
    1x1 convolution with batch norm on the shortcut added before the last
    activation, and 2x2 max-pooling; then the spatial mean and a linear
    `ways`-way head. MetaOptNet's DropBlock is left out.

    Args:
        ways: number of classes N (the head's outputs), or None for the
            features alone (an embedding).
        input_shape: `(height, width, channels)`, 84x84x3 for Mini-ImageNet.
        channels: the four blocks' channels.

    Returns:
        A functional `keras.Model` mapping `[B, H, W, C]` to logits `[B, ways]`.
    """
    _check_ways_and_shape(ways, input_shape)
    if len(channels) != 4:
        raise ValueError(f"channels must name 4 blocks, got {channels!r}.")
    inputs = keras.Input(input_shape, name="images")
    hidden = inputs
    for block, width in enumerate(channels, start=1):
        shortcut = keras.layers.Conv2D(
            width, 1, use_bias=False, name=f"block{block}_shortcut"
        )(hidden)
        shortcut = BatchNormalization(name=f"block{block}_shortcut_bn")(
            shortcut
        )
        for layer in range(1, 4):
            hidden = keras.layers.Conv2D(
                width,
                3,
                padding="same",
                use_bias=False,
                name=f"block{block}_conv{layer}",
            )(hidden)
            hidden = BatchNormalization(name=f"block{block}_bn{layer}")(hidden)
            if layer < 3:
                hidden = keras.layers.LeakyReLU(
                    0.1, name=f"block{block}_relu{layer}"
                )(hidden)
        hidden = keras.layers.Add(name=f"block{block}_add")([hidden, shortcut])
        hidden = keras.layers.LeakyReLU(0.1, name=f"block{block}_relu3")(hidden)
        hidden = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(hidden)
    features = keras.layers.GlobalAveragePooling2D(name="features")(hidden)
    if ways is None:
        return keras.Model(inputs, features, name=name)
    logits = keras.layers.Dense(ways, name="head")(features)
    return keras.Model(inputs, logits, name=name)


def from_backbone(backbone, ways, trainable=True, name=None):
    """A learner from any Keras image model: `backbone`, the spatial mean
    of its last feature map (when it has one), and a new linear `ways`-way
    head.

    For `keras.applications` models pass `include_top=False` (and
    `weights="imagenet"` on a machine that can download them); KerasHub
    backbones work alike. `trainable=False` freezes the body, so that only
    the head learns: with ANIL or the NIL head that is the practical recipe
    for colour photos (a strong pre-trained body, a head adapted to each
    task). The backbone's own batch-norm layers are Keras's, whose second
    derivatives are inexact: train it first-order or with ANIL (MAML warns).

    Returns:
        A functional `keras.Model` mapping the backbone's inputs to logits
        `[B, ways]`.
    """
    if not isinstance(backbone, keras.Model):
        raise TypeError(
            "backbone must be a keras.Model (for example "
            "keras.applications.MobileNetV3Small(include_top=False, ...)), "
            f"got {type(backbone).__name__}."
        )
    if not isinstance(ways, int) or ways < 2:
        raise ValueError(f"ways must be an int >= 2, got {ways!r}.")
    backbone.trainable = trainable
    inputs = keras.Input(backbone.input_shape[1:], name="images")
    features = backbone(inputs)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="features")(
            features
        )
    elif len(features.shape) != 2:
        raise ValueError(
            f"The backbone's output has shape {features.shape}: expected "
            "[B, H, W, C] feature maps or [B, features]."
        )
    logits = keras.layers.Dense(ways, name="head")(features)
    return keras.Model(inputs, logits, name=name or f"{backbone.name}_head")


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
