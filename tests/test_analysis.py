"""Similarity measures against independent facts, and the analysis tools."""

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf

import keras_meta
from keras_meta.analysis import linear_cka, svcca

RNG = np.random.default_rng(0)


def numpy_cka(x, y):
    """CKA by its HSIC definition with the centring matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("features", [5, 80])  # feature and Gram forms
def test_linear_cka_facts(features):
    x = RNG.normal(size=(40, features))
    y = RNG.normal(size=(40, 7))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(RNG.normal(size=(features, features)))
    assert linear_cka(x, 3.5 * x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, y) == pytest.approx(numpy_cka(x, y), rel=1e-10)
    assert 0.0 <= linear_cka(x, y) < 0.5


def test_svcca_separates_related_from_unrelated():
    x = RNG.normal(size=(500, 10))
    unrelated = RNG.normal(size=(500, 10))
    related = x @ RNG.normal(size=(10, 10)) + 0.01 * RNG.normal(size=(500, 10))
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, related) > 0.95
    assert svcca(x, unrelated) < 0.3
    assert svcca(x, unrelated) < svcca(x, related) - 0.5


def test_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        linear_cka(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same examples"):
        svcca(np.zeros((5, 2)), np.zeros((6, 2)))


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    images = RNG.random((60, 16, 16, 1)).astype("float32")
    labels = np.repeat(np.arange(12), 5)
    episodes = keras_meta.data.episodes_from_arrays(
        images, labels, ways=3, shots=1, queries=3, meta_batch=4, seed=0
    )
    model = keras_meta.MAML(
        keras_meta.models.conv4(3, (16, 16, 1), filters=4),
        inner_lr=0.5,
        eval_inner_steps=2,
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(episodes, steps_per_epoch=3, verbose=0)
    return model, episodes, images, labels


def test_representation_similarity(tiny_model):
    model, episodes, _, _ = tiny_model
    rows = keras_meta.analysis.representation_similarity(
        model, episodes, num_tasks=4
    )
    names = [r["layer"] for r in rows]
    assert names == [
        "block1_conv",
        "block2_conv",
        "block3_conv",
        "block4_conv",
        "head",
    ]
    for row in rows:
        assert 0.0 <= row["cka"] <= 1.0 + 1e-9
        assert 0.0 <= row["cca"] <= 1.0 + 1e-9
    # With no inner step nothing moves: every layer is identical.
    unchanged = keras_meta.analysis.representation_similarity(
        model, episodes, num_tasks=4, steps=0
    )
    for row in unchanged:
        assert row["cka"] == pytest.approx(1.0, abs=1e-6)
        assert row["cca"] == pytest.approx(1.0, abs=1e-6)


def test_freezing_ablation_ends_match_plain_evaluation(tiny_model):
    model, episodes, _, _ = tiny_model
    rows = keras_meta.analysis.freezing_ablation(model, episodes, num_tasks=8)
    assert [r["adapted_from"] for r in rows] == [
        "block1_conv",
        "block2_conv",
        "block3_conv",
        "block4_conv",
        "head",
        "none",
    ]
    everything = keras_meta.evaluate_few_shot(model, episodes, num_tasks=8)
    nothing = keras_meta.evaluate_few_shot(
        model, episodes, num_tasks=8, inner_steps=0
    )
    assert rows[0]["accuracy"] == pytest.approx(everything.mean, abs=1e-6)
    assert rows[-1]["accuracy"] == pytest.approx(nothing.mean, abs=1e-6)


def test_nil_head_recognises_its_own_support_images(tiny_model):
    model, _, images, labels = tiny_model
    # Queries identical to the support images: each is most similar to its
    # own class (cosine similarity 1), whatever the features.
    import tensorflow as tf

    support_x = images[[0, 5, 10]][None]
    x = {
        "support_x": support_x,
        "support_y": np.array([[0, 1, 2]]),
        "query_x": support_x,
    }
    same = tf.data.Dataset.from_tensors((x, np.array([[0, 1, 2]]))).repeat()
    result = keras_meta.analysis.nil_accuracy(model, same, num_tasks=3)
    assert result["accuracy"] == 1.0 and result["num_tasks"] == 3


def test_update_directions_match_their_closed_forms(float64):
    """On linear regression, for two SGD steps of size a from phi: the
    pre-training direction is g1, Reptile's phi - W = a (g1 + g2),
    first-order MAML's the query gradient at W, and MAML's (I - a H)^2
    times it, H the support Hessian (numpy)."""
    tasks, shots, queries, dim, a = 6, 8, 7, 3, 0.07
    x, y = reference.linear_regression_tasks(
        np.random.default_rng(5), tasks, shots, queries, dim, noise=0.3
    )
    support_x, query_x = x["support_x"], x["query_x"]
    learner = keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(1, use_bias=False)]
    )
    model = keras_meta.MAML(learner, inner_lr=a)
    model.compile(loss="mse")
    phi = learner.trainable_variables[0].numpy()
    expected = {name: [] for name in keras_meta.analysis.DIRECTIONS}
    for xs, ys, xq, yq in zip(support_x, x["support_y"], query_x, y):
        hessian = (2 / shots) * xs.T @ xs
        g1 = (2 / shots) * xs.T @ (xs @ phi - ys)
        g2 = (2 / shots) * xs.T @ (xs @ (phi - a * g1) - ys)
        adapted = phi - a * g1 - a * g2
        g_query = (2 / queries) * xq.T @ (xq @ adapted - yq)
        step = np.eye(dim) - a * hessian
        expected["pretrain"].append(g1.ravel())
        expected["reptile"].append(a * (g1 + g2).ravel())
        expected["first_order_maml"].append(g_query.ravel())
        expected["maml"].append((step @ step @ g_query).ravel())
    episodes = tf.data.Dataset.from_tensors((x, y))
    result = keras_meta.analysis.update_directions(model, episodes, tasks, 2)
    for name, vectors in expected.items():
        norms = np.linalg.norm(vectors, axis=1)
        assert result["norms"][name]["mean"] == pytest.approx(norms.mean())
    u, v = np.asarray(expected["pretrain"]), np.asarray(expected["maml"])
    cosines = (
        np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    )
    got = result["cosines"]["pretrain|maml"]
    assert got["mean"] == pytest.approx(cosines.mean())
    assert got["ci95"] == pytest.approx(1.96 * cosines.std() / np.sqrt(tasks))
