"""ProtoNet, Proto-MAML and BOIL against numpy and finite differences.

Every expected value is computed with numpy alone. A meta-gradient is read
off one `fit` step with `SGD(learning_rate=1)`, as in
tests/test_meta_gradients.py."""

import keras
import numpy as np
import numpy_reference as reference
import pytest
from test_meta_gradients import (
    classification_tasks,
    meta_step,
    numpy_cross_entropy,
    numpy_meta_loss,
    two_layer_learner,
)

import keras_meta

RNG = np.random.default_rng(3)


def linear_embedding(dim=4, features=3):
    """z = x W: an embedding simple enough for numpy."""
    return keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(features, use_bias=False)]
    )


def numpy_prototype_logits(w, support_x, support_y, query_x, ways):
    """Minus the squared distance of each query embedding to each class's
    mean support embedding."""
    support, query = support_x @ w, query_x @ w
    prototypes = np.stack(
        [support[support_y == k].mean(0) for k in range(ways)]
    )
    return -((query[:, None, :] - prototypes[None]) ** 2).sum(-1)


def numpy_protonet_loss(params, x, query_y, ways):
    (w,) = params
    return np.mean(
        [
            numpy_cross_entropy(
                numpy_prototype_logits(
                    w,
                    x["support_x"][t],
                    x["support_y"][t],
                    x["query_x"][t],
                    ways,
                ),
                query_y[t],
            )
            for t in range(len(query_y))
        ]
    )


def test_protonet_logits_and_meta_gradient_match_numpy(float64):
    ways = 3
    model = keras_meta.ProtoNet(linear_embedding(), ways=ways)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, query_y = classification_tasks(ways=ways)
    w = model.learner.trainable_variables[0].numpy().copy()
    logits = model.predict_on_batch(x)
    for t in range(len(query_y)):
        np.testing.assert_allclose(
            logits[t],
            numpy_prototype_logits(
                w, x["support_x"][t], x["support_y"][t], x["query_x"][t], ways
            ),
            rtol=1e-10,
        )
    expected = reference.finite_differences(
        lambda p: numpy_protonet_loss(p, x, query_y, ways), [w]
    )
    before, after = meta_step(model, (x, query_y))
    np.testing.assert_allclose(before[0] - after[0], expected[0], rtol=1e-6)


def test_protonet_takes_tasks_of_fewer_classes_than_its_ways(float64):
    """Trained for 5-way tasks, it classifies 3-way ones: the classes a
    task lacks get no probability."""
    model = keras_meta.ProtoNet(linear_embedding(), ways=5)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, _ = classification_tasks(ways=3)
    logits = model.predict_on_batch(x)
    assert logits.shape[-1] == 5
    probabilities = keras.ops.softmax(logits).numpy()
    np.testing.assert_allclose(probabilities[..., 3:], 0.0, atol=1e-12)
    w = model.learner.trainable_variables[0].numpy()
    np.testing.assert_allclose(
        logits[0, :, :3],
        numpy_prototype_logits(
            w, x["support_x"][0], x["support_y"][0], x["query_x"][0], 3
        ),
        rtol=1e-10,
    )


def numpy_protomaml_loss(params, x, query_y, ways, alpha, steps):
    """Proto-MAML's meta-loss: the head starts at (2c, -|c|^2) from the
    support prototypes; `steps` gradient steps on W, kernel and bias of the
    support cross-entropy of `x W kernel + bias`; the query loss after."""
    (w0,) = params
    losses = []
    for t in range(len(query_y)):
        xs, ys = x["support_x"][t], x["support_y"][t]
        support = xs @ w0
        c = np.stack([support[ys == k].mean(0) for k in range(ways)])
        w, kernel, bias = w0.copy(), 2 * c.T, -(c**2).sum(1)
        for _ in range(steps):
            z = xs @ w
            d_logits = reference.cross_entropy_logit_gradient(
                z @ kernel + bias, ys
            )
            d_w = xs.T @ (d_logits @ kernel.T)
            d_kernel, d_bias = z.T @ d_logits, d_logits.sum(0)
            w, kernel, bias = (
                w - alpha * d_w,
                kernel - alpha * d_kernel,
                bias - alpha * d_bias,
            )
        logits = x["query_x"][t] @ w @ kernel + bias
        losses.append(numpy_cross_entropy(logits, query_y[t]))
    return np.mean(losses)


@pytest.mark.parametrize("steps", [1, 2])
def test_protomaml_meta_gradient_through_the_prototypes(float64, steps):
    ways, alpha = 3, 0.3
    model = keras_meta.ProtoMAML(
        linear_embedding(), ways=ways, inner_lr=alpha, inner_steps=steps
    )
    x, query_y = classification_tasks(ways=ways)
    w = model.learner.trainable_variables[0].numpy().copy()
    expected = reference.finite_differences(
        lambda p: numpy_protomaml_loss(p, x, query_y, ways, alpha, steps), [w]
    )
    before, after = meta_step(model, (x, query_y))
    np.testing.assert_allclose(before[0] - after[0], expected[0], rtol=1e-6)


def test_protomaml_without_steps_classifies_as_protonet(float64):
    learner = linear_embedding()
    x, _ = classification_tasks(ways=3)
    proto_maml = keras_meta.ProtoMAML(learner, ways=3, eval_inner_steps=0)
    protonet = keras_meta.ProtoNet(learner, ways=3)
    for model in (proto_maml, protonet):
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    softmax = keras.ops.softmax
    np.testing.assert_allclose(
        softmax(proto_maml.predict_on_batch(x)).numpy(),
        softmax(protonet.predict_on_batch(x)).numpy(),
        rtol=1e-9,
    )


def test_boil_adapts_only_the_body_and_its_meta_gradient_matches(float64):
    alpha, steps = 0.5, 2
    learner = two_layer_learner(4, 5, 3)
    model = keras_meta.BOIL(learner, inner_lr=alpha, inner_steps=steps)
    x, query_y = classification_tasks()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    adapted = model.adapt(x["support_x"][0], x["support_y"][0])
    initial = [v.numpy() for v in learner.trainable_variables]
    assert not np.allclose(adapted[0], initial[0])  # the body moved
    np.testing.assert_array_equal(adapted[2], initial[2])  # not the head
    np.testing.assert_array_equal(adapted[3], initial[3])
    params = [v.numpy().copy() for v in learner.trainable_variables]
    expected = reference.finite_differences(
        lambda p: numpy_meta_loss(p, x, query_y, alpha, steps, [0, 1]),
        params,
    )
    before, after = meta_step(model, (x, query_y))
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=1e-6, atol=1e-8)
    assert np.abs(before[2] - after[2]).max() > 1e-4  # the head learns


def test_methods_refuse_the_wrong_learner_at_construction():
    with pytest.raises(ValueError, match="takes an embedding learner"):
        keras_meta.ProtoNet(keras_meta.models.conv4(5, filters=2), ways=5)
    with pytest.raises(ValueError, match="needs ways=N"):
        keras_meta.ProtoMAML(linear_embedding())
    with pytest.raises(ValueError, match="leaves no body"):
        keras_meta.BOIL(linear_embedding(), head_layers=1)
    # An embedding where a classifier is needed: its outputs are not the
    # episodes' ways.
    maml = keras_meta.MAML(keras_meta.models.conv4(None, (16, 16, 1), 4))
    maml.compile(loss=keras.losses.SparseCategoricalCrossentropy(True))
    x = {
        "support_x": RNG.random((1, 3, 16, 16, 1), "f4"),
        "support_y": np.arange(3)[None],
        "query_x": RNG.random((1, 3, 16, 16, 1), "f4"),
    }
    with pytest.raises(ValueError, match="4 outputs, but the episodes are 3"):
        maml.fit(x, np.arange(3)[None], verbose=0)
