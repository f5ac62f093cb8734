"""Similarity measures against independent facts, and the analysis tools."""

import json

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


def prototype_tasks(tasks=6, ways=3, shots=2, queries=4, dim=4):
    """Random linearly-embedded tasks, as one episode batch."""
    rng = np.random.default_rng(1)
    support_y = np.tile(np.repeat(np.arange(ways), shots), (tasks, 1))
    query_y = np.tile(np.repeat(np.arange(ways), queries), (tasks, 1))
    centres = rng.normal(size=(tasks, ways, dim))
    support_x = centres[np.arange(tasks)[:, None], support_y]
    query_x = centres[np.arange(tasks)[:, None], query_y]
    support_x = support_x + 1.5 * rng.normal(size=support_x.shape)
    query_x = query_x + 1.5 * rng.normal(size=query_x.shape)
    x = {
        "support_x": support_x.astype("float32"),
        "support_y": support_y,
        "query_x": query_x.astype("float32"),
    }
    return tf.data.Dataset.from_tensors((x, query_y)), x, query_y


def linear_proto_maml(inner_lr, algorithm="ProtoMAML"):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((4,))
    learner = keras.Model(inputs, keras.layers.Dense(3, name="embed")(inputs))
    if algorithm == "ProtoNet":
        model = keras_meta.ProtoNet(learner, ways=3)
    else:
        model = keras_meta.ProtoMAML(learner, ways=3, inner_lr=inner_lr)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def numpy_prototype_step(w, b, sx, sy, lr, body):
    """One SGD step of Proto-MAML's inner loop on a linear embedding
    `z = x w + b`, from the prototype head (kernel `2 c_k`, bias
    `-|c_k|^2`); the body moves too if `body`. Returns (w, b, kernel,
    head bias)."""
    z = sx @ w + b
    prototypes = np.stack([z[sy == k].mean(axis=0) for k in range(3)])
    kernel, head_bias = 2 * prototypes.T, -np.sum(prototypes**2, axis=1)
    g = reference.cross_entropy_logit_gradient(z @ kernel + head_bias, sy)
    dz = g @ kernel.T
    if body:
        w, b = w - lr * sx.T @ dz, b - lr * dz.sum(axis=0)
    return w, b, kernel - lr * z.T @ g, head_bias - lr * g.sum(axis=0)


def test_prototype_ablation_rows_match_numpy():
    """Proto-MAML's freezing ablation on a linear embedding: adapt the
    embedding and the prototype head, the prototype head alone, or nothing
    (ProtoNet's nearest prototype), each against numpy."""
    lr = 2.0
    model = linear_proto_maml(lr)
    episodes, x, query_y = prototype_tasks()
    w, b = (v.numpy().astype(np.float64) for v in model.learner.weights)
    expected = {"embed": [], "prototype head": [], "none": []}
    for t in range(len(query_y)):
        sx, sy = x["support_x"][t].astype(np.float64), x["support_y"][t]
        qx, qy = x["query_x"][t].astype(np.float64), query_y[t]
        for row, body in (("embed", True), ("prototype head", False)):
            w1, b1, kernel, head_bias = numpy_prototype_step(
                w, b, sx, sy, lr, body
            )
            logits = (qx @ w1 + b1) @ kernel + head_bias
            expected[row].append(np.mean(logits.argmax(axis=1) == qy))
        z, q = sx @ w + b, qx @ w + b
        prototypes = np.stack([z[sy == k].mean(axis=0) for k in range(3)])
        distance = ((q[:, None] - prototypes[None]) ** 2).sum(axis=2)
        expected["none"].append(np.mean(distance.argmin(axis=1) == qy))
    # The rows differ, so that the test tells them apart.
    means = {row: np.mean(v) for row, v in expected.items()}
    assert len(set(means.values())) == 3, means
    rows = keras_meta.analysis.freezing_ablation(
        model, episodes, num_tasks=len(query_y), steps=1
    )
    assert [r["adapted_from"] for r in rows] == list(expected)
    for row in rows:
        assert row["accuracy"] == pytest.approx(means[row["adapted_from"]])
    (head_only,) = keras_meta.analysis.head_only_accuracy(
        model, episodes, num_tasks=len(query_y), steps=[1]
    )
    assert head_only["accuracy"] == pytest.approx(means["prototype head"])


def test_prototype_fine_tuned_head_matches_numpy():
    lr = 0.7
    model = linear_proto_maml(lr)
    _, x, query_y = prototype_tasks(tasks=1)
    task = keras_meta.engine.Task(
        x["support_x"][0], x["support_y"][0], x["query_x"][0]
    )
    weights, state = model.weights_and_state()
    w, b = (v.numpy().astype(np.float64) for v in weights)
    sx, sy = x["support_x"][0].astype(np.float64), x["support_y"][0]
    for adapted, body in ((None, True), ([], False), ([1], "bias")):
        moved, kernel, head_bias, present, _ = model.fine_tuned_head(
            weights, state, task, 1, adapted=adapted
        )
        w1, b1, kernel1, head_bias1 = numpy_prototype_step(
            w, b, sx, sy, lr, bool(body)
        )
        if body == "bias":
            w1 = w  # only the embedding's bias moves
        np.testing.assert_allclose(moved[0], w1, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(moved[1], b1, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(kernel, kernel1, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(head_bias, head_bias1, rtol=1e-4, atol=1e-5)
        assert np.all(present)


def test_nil_head_reads_a_protonet_embedding():
    """ProtoNet's NIL head: cosine similarity of the embeddings (the whole
    learner), against numpy."""
    model = linear_proto_maml(None, "ProtoNet")
    episodes, x, query_y = prototype_tasks()
    w, b = (v.numpy().astype(np.float64) for v in model.learner.weights)
    scores = []
    for t in range(len(query_y)):
        z = x["support_x"][t] @ w + b
        q = x["query_x"][t] @ w + b
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        sy = x["support_y"][t]
        per_class = np.stack(
            [(q @ z[sy == k].T).mean(axis=1) for k in range(3)], axis=1
        )
        scores.append(np.mean(per_class.argmax(axis=1) == query_y[t]))
    result = keras_meta.analysis.nil_accuracy(
        model, episodes, num_tasks=len(query_y)
    )
    np.testing.assert_allclose(result["task_accuracies"], scores)


def fake_analysis(folder, algorithm, cka, accuracies, nil):
    """An analysis.json with the given per-layer CKA and freezing rows."""
    folder.mkdir(parents=True)
    names = list(cka) if "head" in cka else [*cka, "prototype head"]
    rows = [
        {"adapted_from": name, "frozen": i, "accuracy": a}
        for i, (name, a) in enumerate(zip([*names, "none"], accuracies))
    ]
    result = {
        "algorithm": algorithm,
        "inner_steps": 3,
        "similarity": [{"layer": k, "cka": v} for k, v in cka.items()],
        "freezing": {"1": rows[::-1], "3": rows},  # the model's own steps
        "nil": {"accuracy": nil},
    }
    (folder / "analysis.json").write_text(json.dumps(result))
    return folder


def test_side_by_side_averages_runs_and_picks_the_rows(tmp_path):
    from keras_meta.cli import side_by_side

    blocks = [f"block{i}_conv" for i in range(1, 5)]
    runs = [
        fake_analysis(
            tmp_path / "maml0",
            "maml",
            dict(zip([*blocks, "head"], [1.0, 0.99, 0.98, 0.8, 0.4])),
            [0.9, 0.91, 0.92, 0.93, 0.6, 0.2],
            0.85,
        ),
        fake_analysis(
            tmp_path / "maml1",
            "maml",
            dict(zip([*blocks, "head"], [1.0, 0.97, 0.96, 0.6, 0.2])),
            [0.8, 0.81, 0.82, 0.83, 0.4, 0.2],
            0.75,
        ),
        fake_analysis(
            tmp_path / "protonet",
            "protonet",
            dict(zip(blocks, [1.0, 1.0, 1.0, 1.0])),
            [0.95] * 6,
            0.9,
        ),
    ]
    text = side_by_side.write(runs, tmp_path / "out")
    lines = text.splitlines()
    assert lines[0].split(" | ")[2:7] == [f"CKA {b}" for b in blocks] + [
        "CKA head"
    ]
    # MAML: the mean of its two runs; columns: every layer (row 0), blocks
    # 1-3 frozen (row 3), the head alone (row -2), nothing (row -1), NIL.
    maml = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert maml == [
        "maml", "2", "1.000", "0.980", "0.970", "0.700", "0.300",
        "85.0", "88.0", "50.0", "20.0", "80.0",
    ]  # fmt: skip
    protonet = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert protonet[:7] == ["protonet", "1", *["1.000"] * 4, "-"]
    assert (tmp_path / "out" / "side_by_side_similarity.png").exists()
    with pytest.raises(ValueError, match="run `train.analyze"):
        side_by_side.write([tmp_path / "missing"], tmp_path / "out")
