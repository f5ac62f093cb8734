"""`keras_meta.layers.BatchNormalization` against numpy and against Keras's
own composite batch norm: outputs, moving statistics, first and second
derivatives, and a MAML meta-update (with and without XLA)."""

import warnings

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf

import keras_meta

RNG = np.random.default_rng(7)


def op_types(layer, x, training=True):
    """The op types of `layer(x)` traced as a graph."""
    fn = tf.function(lambda x: layer(x, training=training))
    graph = fn.get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


def pair(shape, momentum=0.9):
    """Our layer and Keras's, built alike with the same random weights."""
    ours = keras_meta.layers.BatchNormalization(momentum=momentum)
    theirs = keras.layers.BatchNormalization(momentum=momentum)
    for layer in (ours, theirs):
        layer.build(shape)
    for variable, value in zip(
        ours.weights, [RNG.normal(size=v.shape) for v in ours.weights]
    ):
        variable.assign(np.abs(value) if "variance" in variable.path else value)
    for a, b in zip(theirs.weights, ours.weights):
        a.assign(b)
    return ours, theirs


@pytest.mark.parametrize("shape", [(7, 5), (3, 6, 5, 4)])
def test_training_pass_is_fused_and_matches_numpy(shape):
    """Rank 2 and rank 4: normalised with the batch's population variance,
    moving statistics moved by momentum towards the batch mean and the
    population variance (numpy), through `FusedBatchNormV3`."""
    ours, _ = pair(shape, momentum=0.8)
    x = RNG.normal(2.0, 3.0, shape).astype("float32")
    assert "FusedBatchNormV3" in op_types(ours, x)
    gamma, beta, moving_mean, moving_variance = (
        v.numpy() for v in ours.weights
    )
    axes = tuple(range(len(shape) - 1))
    mean, variance = x.mean(axes), x.var(axes)
    expected = gamma * (x - mean) / np.sqrt(variance + ours.epsilon) + beta
    y = ours(x, training=True)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        ours.moving_mean, 0.8 * moving_mean + 0.2 * mean, rtol=1e-5
    )
    np.testing.assert_allclose(
        ours.moving_variance, 0.8 * moving_variance + 0.2 * variance, rtol=1e-5
    )
    # Inference mode: the moving statistics, Keras's composite path.
    assert "FusedBatchNormV3" not in op_types(ours, x, training=False)
    mean, variance = ours.moving_mean.numpy(), ours.moving_variance.numpy()
    np.testing.assert_allclose(
        ours(x, training=False),
        gamma * (x - mean) / np.sqrt(variance + ours.epsilon) + beta,
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_segments_normalise_each_part_apart(dtype):
    """Under `batch_segments([2, 5])` one call on 7 rows normalises rows 0-1
    and rows 2-6 each with their own statistics, and moves the moving
    statistics twice, first towards the first part's (numpy), on the fused
    kernel (float32) and on Keras's path (float64)."""
    ours = keras_meta.layers.BatchNormalization(momentum=0.8, dtype=dtype)
    ours.build((7, 3, 3, 4))
    ours.gamma.assign(RNG.uniform(0.5, 1.5, 4))
    ours.beta.assign(RNG.normal(size=4))
    x = RNG.normal(1.0, 2.0, (7, 3, 3, 4)).astype(dtype)
    gamma, beta = ours.gamma.numpy(), ours.beta.numpy()
    expected, mean, variance = [], np.zeros(4), np.ones(4)
    for part in (x[:2], x[2:]):
        m, v = part.mean((0, 1, 2)), part.var((0, 1, 2))
        expected.append(gamma * (part - m) / np.sqrt(v + ours.epsilon) + beta)
        mean, variance = 0.8 * mean + 0.2 * m, 0.8 * variance + 0.2 * v
    with keras_meta.layers.batch_segments([2, 5]):
        y = ours(x, training=True)
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(
        y, np.concatenate(expected), rtol=tolerance, atol=tolerance
    )
    np.testing.assert_allclose(ours.moving_mean, mean, rtol=tolerance)
    np.testing.assert_allclose(ours.moving_variance, variance, rtol=tolerance)
    # Outside the context, one batch again.
    y = ours(x, training=True)
    whole = (
        gamma
        * (x - x.mean((0, 1, 2)))
        / np.sqrt(x.var((0, 1, 2)) + ours.epsilon)
    )
    np.testing.assert_allclose(y, whole + beta, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_second_derivatives_match_finite_differences(dtype):
    """For `f = sum(sin(bn(x)) * w)`, the gradient of `<df/dx, u> + <df/d
    gamma, v>` (what second-order MAML takes of an inner gradient) equals
    central differences of numpy's analytic first derivative, in float64:
    float32 through the fused kernel, float64 through Keras's pass with
    exact moments. Keras's own layer fails this (its `tf.nn.moments` stops
    the mean's gradient)."""
    shape = (3, 4, 2, 5)
    x, w, u = (RNG.normal(1.0, 2.0, shape) for _ in range(3))
    gamma, v = RNG.uniform(0.5, 1.5, 5), RNG.normal(size=5)
    layer = keras_meta.layers.BatchNormalization(dtype=dtype)
    layer.build(shape)
    layer.gamma.assign(gamma)
    epsilon = layer.epsilon

    def probe(arrays):
        x, gamma = arrays
        y, backward = reference.batch_norm(x, gamma, 0.0, epsilon)
        d_x, d_gamma = backward(np.cos(y) * w)
        return (d_x * u).sum() + (d_gamma * v).sum()

    expected = reference.finite_differences(probe, [x, gamma], eps=1e-5)
    x_t, w_t, u_t, v_t = (tf.constant(a, dtype) for a in (x, w, u, v))
    with tf.GradientTape() as outer:
        outer.watch(x_t)
        with tf.GradientTape() as inner:
            inner.watch(x_t)
            loss = tf.reduce_sum(tf.sin(layer(x_t, training=True)) * w_t)
        d_x, d_gamma = inner.gradient(loss, [x_t, layer.gamma])
        penalty = tf.reduce_sum(d_x * u_t) + tf.reduce_sum(d_gamma * v_t)
    got = outer.gradient(penalty, [x_t, layer.gamma])
    tolerance = 1e-3 if dtype == "float32" else 1e-7
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=tolerance, atol=tolerance)


def test_channels_first_uses_plain_ops_and_matches_numpy():
    """An axis other than the last (channels first): no fused kernel, the
    statistics over every other axis, as numpy computes them."""
    shape = (4, 3, 5)
    layer = keras_meta.layers.BatchNormalization(axis=1, momentum=0.5)
    layer.build(shape)
    gamma, beta = RNG.uniform(0.5, 1.5, 3), RNG.normal(size=3)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    x = RNG.normal(1.0, 2.0, shape).astype("float32")
    assert "FusedBatchNormV3" not in op_types(layer, x)
    mean = x.mean((0, 2), keepdims=True)
    variance = x.var((0, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(variance + layer.epsilon) * gamma[
        :, None
    ] + beta[:, None]
    np.testing.assert_allclose(
        layer(x, training=True), expected, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        layer.moving_variance, 0.5 + 0.5 * variance.ravel(), rtol=1e-5
    )


def test_float64_falls_back_to_keras(float64):
    """The kernel has no float64: Keras's composite ops, Keras's values."""
    shape = (6, 4)
    ours, theirs = pair(shape)
    x = RNG.normal(size=shape)
    assert "FusedBatchNormV3" not in op_types(ours, x)
    np.testing.assert_allclose(
        ours(x, training=True), theirs(x, training=True), rtol=1e-12
    )


def test_maml_update_is_the_same_under_xla():
    """One second-order MAML meta-update of conv4 moves every weight alike
    with and without XLA (`jit_compile=True`, Keras's default on GPUs): the
    fused kernel and its second derivative compile. (The meta-gradient
    itself is checked against finite differences in test_meta_gradients.)"""
    ways, shots, tasks = 3, 4, 2
    x = {
        "support_x": RNG.random((tasks, ways * shots, 16, 16, 1), "float32"),
        "support_y": np.tile(np.arange(ways), (tasks, shots)),
        "query_x": RNG.random((tasks, ways * shots, 16, 16, 1), "float32"),
    }
    y = np.tile(np.arange(ways), (tasks, shots))
    # Strided: max-pooling's ties (ReLU zeros) route gradients differently
    # under XLA, for Keras's batch norm too.
    start = keras_meta.models.conv4(
        ways, (16, 16, 1), 4, "stride"
    ).get_weights()
    moved = []
    for jit_compile in (False, True):
        learner = keras_meta.models.conv4(ways, (16, 16, 1), 4, "stride")
        learner.set_weights(start)
        model = keras_meta.MAML(learner, inner_lr=0.1)
        model.compile(
            optimizer=keras.optimizers.SGD(1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        assert model.jit_compile == jit_compile  # XLA was not turned off
        model.fit(x, y, batch_size=tasks, verbose=0)
        moved.append([a - b for a, b in zip(learner.get_weights(), start)])
    for plain, xla in zip(*moved):
        np.testing.assert_allclose(xla, plain, rtol=1e-3, atol=1e-5)
    assert max(np.abs(m).max() for m in moved[0]) > 1e-3


def keras_batch_norm_learner():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5),
            keras.layers.BatchNormalization(name="plain_bn"),
            keras.layers.Dense(3),
        ]
    )


@pytest.mark.parametrize(
    "build, warns",
    [
        (lambda: keras_meta.MAML(keras_batch_norm_learner(), 0.1), True),
        (lambda: keras_meta.MetaSGD(keras_batch_norm_learner(), 0.1), True),
        (
            lambda: keras_meta.MAML(
                keras_batch_norm_learner(), 0.1, first_order=True
            ),
            False,
        ),
        # ANIL differentiates only its head twice; the batch norm is in
        # its body.
        (lambda: keras_meta.ANIL(keras_batch_norm_learner(), 0.1), False),
        (
            lambda: keras_meta.MAML(
                keras_meta.models.conv4(3, (16, 16, 1), filters=2), 0.1
            ),
            False,
        ),
    ],
)
def test_second_order_through_keras_batch_norm_warns(build, warns):
    """Training warns, naming the layer, exactly when a second-order
    meta-gradient goes through Keras's own batch norm."""
    model = build()
    shape = model.learner.inputs[0].shape[1:]
    x = {
        "support_x": RNG.random((2, 3, *shape), "float32"),
        "support_y": np.tile(np.arange(3), (2, 1)),
        "query_x": RNG.random((2, 3, *shape), "float32"),
    }
    y = np.tile(np.arange(3), (2, 1))
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=2, verbose=0)
    messages = [str(w.message) for w in caught if "inexact" in str(w.message)]
    assert bool(messages) == warns
    if warns:
        assert "plain_bn" in messages[0]
