"""Learners for colour images: ResNet-12 and any Keras backbone with a new
head, checked against closed forms and a direct computation of ANIL's
meta-update; every algorithm that applies trains on them under `fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)


def episode(tasks=1, ways=3, shots=1, queries=2, size=16):
    x = {
        "support_x": RNG.random((tasks, ways * shots, size, size, 3), "f4"),
        "support_y": np.tile(np.repeat(np.arange(ways), shots), (tasks, 1)),
        "query_x": RNG.random((tasks, ways * queries, size, size, 3), "f4"),
    }
    return x, np.tile(np.repeat(np.arange(ways), queries), (tasks, 1))


def tiny_backbone(size=16):
    """A small functional image model to stand for a Keras backbone."""
    inputs = keras.Input((size, size, 3))
    hidden = keras.layers.Conv2D(6, 3, strides=2, padding="same")(inputs)
    hidden = keras_meta.layers.BatchNormalization()(hidden)
    hidden = keras.layers.ReLU()(hidden)
    return keras.Model(inputs, hidden, name="tiny_backbone")


def test_resnet12_has_the_papers_parameters():
    channels, ways = (4, 5, 6, 7), 3
    learner = keras_meta.models.resnet12(ways, (84, 84, 3), channels)
    expected, previous = 0, 3
    for c in channels:
        expected += 9 * previous * c + 2 * 9 * c * c  # three 3x3, no bias
        expected += previous * c  # the 1x1 shortcut
        expected += 4 * 2 * c  # four batch norms' scale and offset
        previous = c
    expected += channels[-1] * ways + ways  # the head
    trainable = sum(int(np.prod(v.shape)) for v in learner.trainable_variables)
    assert trainable == expected
    assert learner.output_shape == (None, ways)
    # 84 -> 42 -> 21 -> 10 -> 5 after the four 2x2 poolings.
    assert learner.get_layer("block4_pool").output.shape[1:3] == (5, 5)


@pytest.mark.parametrize("kind", ["resnet12", "backbone"])
def test_anil_update_on_a_backbone_matches_a_direct_computation(kind):
    """One ANIL meta-update (one inner step on the head, second order
    through it) against nested GradientTapes on the Keras learner itself."""
    if kind == "resnet12":
        learner = keras_meta.models.resnet12(3, (16, 16, 3), (4, 4, 4, 4))
    else:
        learner = keras_meta.models.from_backbone(tiny_backbone(), 3)
    alpha, beta = 0.5, 0.1
    model = keras_meta.ANIL(learner, inner_lr=alpha, inner_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(beta), loss=LOSS)
    x, y = episode()
    body = keras.Model(learner.input, learner.get_layer("head").input)
    head = learner.get_layer("head")
    head_kernel, head_bias = head.kernel.value, head.bias.value  # tf's
    variables = learner.trainable_variables
    before = [v.numpy() for v in variables]

    with tf.GradientTape() as outer:
        support = body(x["support_x"][0], training=True)
        with tf.GradientTape() as inner:
            logits = support @ head_kernel + head_bias
            support_loss = LOSS(x["support_y"][0], logits)
        grad_kernel, grad_bias = inner.gradient(
            support_loss, [head_kernel, head_bias]
        )
        kernel = head_kernel - alpha * grad_kernel
        bias = head_bias - alpha * grad_bias
        query = body(x["query_x"][0], training=True)
        query_loss = LOSS(y[0], query @ kernel + bias)
    grads = outer.gradient(query_loss, [v.value for v in variables])
    expected = [b - beta * g.numpy() for b, g in zip(before, grads)]
    for v, b in zip(variables, before):
        v.assign(b)  # the direct computation's batch norms moved nothing

    model.train_on_batch(x, y)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, atol=2e-5, rtol=1e-4)


def test_a_frozen_backbone_leaves_only_the_head_to_learn():
    backbone = tiny_backbone()
    frozen = keras_meta.models.from_backbone(backbone, 3, trainable=False)
    assert [v.path for v in frozen.trainable_variables] == [
        "head/kernel",
        "head/bias",
    ]
    assert frozen.get_layer("features").output.shape == (None, 6)
    with pytest.raises(TypeError, match="backbone must be a keras.Model"):
        keras_meta.models.from_backbone(keras.layers.Dense(3), 3)


ALGORITHMS = {
    "maml": lambda learner: keras_meta.MAML(learner, inner_lr=0.1),
    "first-order maml": lambda learner: keras_meta.MAML(
        learner, inner_lr=0.1, first_order=True
    ),
    "anil": lambda learner: keras_meta.ANIL(learner, inner_lr=0.1),
    "reptile": lambda learner: keras_meta.Reptile(
        learner, inner_lr=0.1, inner_steps=2
    ),
    "metasgd": lambda learner: keras_meta.MetaSGD(learner, inner_lr=0.1),
    "mamlpp": lambda learner: keras_meta.MAMLPlusPlus(
        learner, inner_lr=0.1, inner_steps=2
    ),
}


@pytest.mark.integration  # a compile of each algorithm: second tier
# MAML and ANIL by default; the others (same engine, dearer) are slow.
@pytest.mark.parametrize(
    "algorithm",
    [
        a if a in ("maml", "anil") else pytest.param(a, marks=pytest.mark.slow)
        for a in ALGORITHMS
    ],
)
def test_every_algorithm_trains_on_resnet12(algorithm):
    learner = keras_meta.models.resnet12(3, (16, 16, 3), (4, 4, 4, 4))
    model = ALGORITHMS[algorithm](learner)
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    # MAML++ meta-learns per-step copies of batch norm's scale and offset
    # (its bn_gammas and bn_betas) in place of the learner's own.
    per_step = algorithm == "mamlpp"
    watched = [
        v
        for v in learner.trainable_variables
        if not (per_step and v.path.split("/")[-1] in ("gamma", "beta"))
    ]
    if per_step:
        watched += [*model.bn_gammas, *model.bn_betas]
    before = [v.numpy() for v in watched]
    history = model.fit(*episode(tasks=2), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    moved = [not np.allclose(v.numpy(), b) for v, b in zip(watched, before)]
    assert all(moved), [v.path for v, m in zip(watched, moved) if not m]


@pytest.mark.integration
def test_a_keras_applications_backbone_trains_frozen_or_not():
    def mobilenet():
        return keras.applications.MobileNet(
            input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None
        )

    x, y = episode(tasks=2, size=32)
    frozen = keras_meta.models.from_backbone(mobilenet(), 3, trainable=False)
    assert len(frozen.trainable_variables) == 2
    trainable = keras_meta.models.from_backbone(mobilenet(), 3)
    assert len(trainable.trainable_variables) > 2
    for learner in (frozen, trainable):
        model = keras_meta.ANIL(learner, inner_lr=0.1)
        model.compile(optimizer="adam", loss=LOSS)
        history = model.fit(x, y, verbose=0)
        assert np.isfinite(history.history["loss"][0])
