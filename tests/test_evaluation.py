"""The few-shot protocol (mean and 95% CI) and the batch-norm modes."""

import math

import keras
import numpy as np
import pytest

import keras_meta
from keras_meta.evaluation import FewShotResult

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
BOTH = ("transductive", "non_transductive")
RNG = np.random.default_rng(0)


def image_episodes(tasks=8, seed=0, queries=4):
    images = RNG.random((60, 16, 16, 1)).astype("float32")
    labels = np.repeat(np.arange(12), 5)
    return keras_meta.data.episodes_from_arrays(
        images,
        labels,
        ways=3,
        shots=1,
        queries=queries,
        meta_batch=tasks,
        seed=seed,
    )


def test_accuracy_mean_and_confidence_interval_match_numpy():
    model = keras_meta.MAML(
        keras_meta.models.conv4(3, (16, 16, 1), filters=4), inner_lr=0.5
    )
    model.compile(loss=LOSS)
    episodes = image_episodes()
    result = keras_meta.evaluate_few_shot(model, episodes, num_tasks=20)
    # Independently: 20 tasks = 2 full meta-batches of 8 and 4 of a third.
    per_task = []
    for x, y in episodes.take(3):
        logits = model.predict_on_batch(x)
        per_task.extend((logits.argmax(-1) == y.numpy()).mean(axis=1))
    per_task = np.asarray(per_task[:20])
    assert result.metric == "accuracy" and result.num_tasks == 20
    # Each task's accuracy, in the order the episodes gave the tasks.
    np.testing.assert_allclose(result.task_scores, per_task, atol=1e-6)
    assert result.mean == pytest.approx(per_task.mean(), abs=1e-6)
    assert result.ci95 == pytest.approx(
        1.96 * per_task.std() / math.sqrt(20), abs=1e-6
    )


def test_regression_reports_the_per_task_loss():
    model = keras_meta.MAML(keras_meta.models.mlp(), inner_lr=0.01)
    model.compile(loss="mse")
    episodes = keras_meta.data.sinusoid(meta_batch=5, seed=3)
    result = keras_meta.evaluate_few_shot(
        model, episodes, num_tasks=5, inner_steps=0
    )
    x, y = next(iter(episodes))
    predictions = model.learner.predict_on_batch(
        x["query_x"].numpy().reshape(-1, 1)
    ).reshape(5, -1)
    per_task = ((predictions - y.numpy()[..., 0]) ** 2).mean(axis=1)
    assert result.metric == "loss"
    assert result.mean == pytest.approx(per_task.mean(), rel=1e-5)
    assert model.eval_inner_steps == 1  # restored after the call


def test_a_protocol_sets_tasks_and_modes_and_checks_the_queries():
    model = keras_meta.MAML(
        keras_meta.models.conv4(3, (16, 16, 1), filters=4), inner_lr=0.5
    )
    model.compile(loss=LOSS)
    four_queries = keras_meta.protocols.Protocol(
        "four", queries=4, num_tasks=12, bn_modes=BOTH
    )
    episodes = image_episodes()
    results = keras_meta.evaluation.evaluate_protocol(
        model, episodes, four_queries
    )
    assert [r.bn_mode for r in results] == list(BOTH)
    # Each mode on the same 12 tasks, as the plain call scores them.
    for result in results:
        plain = keras_meta.evaluate_few_shot(
            model, episodes, 12, bn_mode=result.bn_mode
        )
        assert (result.protocol, result.queries) == ("four", 4)
        assert result.num_tasks == 12
        np.testing.assert_allclose(result.task_scores, plain.task_scores)
    # The MAML protocol tests with K queries per class: 1 here, not 4.
    with pytest.raises(ValueError, match="1 query per class, but the "):
        keras_meta.evaluate_few_shot(model, episodes, protocol="maml")
    with pytest.raises(ValueError, match="Unknown protocol 'paper'"):
        keras_meta.evaluate_few_shot(model, episodes, protocol="paper")


def test_protocols_of_other_query_counts_in_turn_on_grouped_tasks():
    # Pretrain's evaluation runs tasks in groups, which needs static
    # shapes: a second protocol with other query counts must not relax the
    # compiled evaluation's shapes.
    model = keras_meta.Pretrain(
        keras_meta.models.conv4(3, (16, 16, 1), filters=4),
        inner_lr=0.5,
        eval_inner_steps=2,
        ways=3,
    )
    model.tasks_per_group = 4
    model.compile(loss=LOSS)
    for queries in (4, 1):
        episodes = image_episodes(queries=queries)
        result = keras_meta.evaluate_few_shot(model, episodes, num_tasks=8)
        x, y = next(iter(episodes))
        logits = model.predict_on_batch(x)
        np.testing.assert_allclose(
            result.task_scores,
            (logits.argmax(-1) == y.numpy()).mean(axis=1),
            atol=1e-6,
        )


def test_protocols_as_the_papers_test():
    protocols = keras_meta.protocols
    assert protocols.get("maml").queries_per_class(5) == 5  # K queries
    reptile = protocols.get("reptile")
    assert (reptile.queries_per_class(5), reptile.num_tasks) == (1, 10000)
    assert reptile.bn_modes == BOTH
    assert [p.name for p in protocols.parse("mamlpp,15_queries")] == [
        "mamlpp",
        "15_queries",
    ]
    for bad, message in (
        ("maml,maml", "twice"),
        ("", "at least one"),
        ("maml,,reptile", "at least one"),
        ("nope", "choose among maml, reptile, mamlpp, protonet, 15_queries"),
    ):
        with pytest.raises(ValueError, match=message):
            protocols.parse(bad)
    with pytest.raises(ValueError, match="bn_modes"):
        protocols.Protocol("x", 1, 10, bn_modes=("moving",))


def test_describe_reads_like_the_papers():
    result = FewShotResult(
        "accuracy", 0.9791, 0.0031, 0.04, 600, 3, "transductive"
    )
    assert result.describe(5, 1) == (
        "accuracy 97.9% +- 0.3% (600 tasks, 5-way 1-shot, bn=transductive)"
    )
    tested = FewShotResult(
        "accuracy", 0.9791, 0.0051, 0.06, 600, 3, "transductive", "maml", 1
    )
    assert tested.describe(5, 1) == (
        "accuracy 97.9% +- 0.5% (600 tasks, 5-way 1-shot, 1 query per "
        "class, bn=transductive, protocol maml)"
    )


def test_too_few_episodes():
    model = keras_meta.MAML(keras_meta.models.mlp())
    model.compile(loss="mse")
    with pytest.raises(ValueError, match="ran out after 10 tasks"):
        keras_meta.evaluate_few_shot(
            model, keras_meta.data.sinusoid(meta_batch=5).take(2), 600
        )


# -- batch-norm modes --------------------------------------------------------


def bn_learner():
    """Input -> BatchNormalization -> Dense, simple enough for numpy."""
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(epsilon=1e-3)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


def predictions(model, support_x, support_y, query_x, bn_mode):
    model.bn_mode = bn_mode
    x = {
        "support_x": support_x[None],
        "support_y": support_y[None],
        "query_x": query_x[None],
    }
    return model.predict_on_batch(x)[0]


def test_non_transductive_normalises_queries_with_support_statistics():
    model = keras_meta.MAML(bn_learner(), inner_lr=0.1, inner_steps=0)
    model.compile(loss=LOSS)
    support_x = RNG.normal(2.0, 3.0, (6, 4)).astype("float32")
    support_y = np.repeat(np.arange(3), 2)
    query_x = RNG.normal(size=(5, 4)).astype("float32")
    kernel, bias = model.learner.layers[-1].get_weights()

    def numpy_logits(reference):
        mean, var = reference.mean(0), reference.var(0)
        return ((query_x - mean) / np.sqrt(var + 1e-3)) @ kernel + bias

    np.testing.assert_allclose(
        predictions(model, support_x, support_y, query_x, "non_transductive"),
        numpy_logits(support_x),
        rtol=1e-4,
        atol=1e-4,
    )
    np.testing.assert_allclose(
        predictions(model, support_x, support_y, query_x, "transductive"),
        numpy_logits(query_x),
        rtol=1e-4,
        atol=1e-4,
    )


def test_modes_differ_with_batch_norm_and_agree_without():
    support_x = RNG.random((6, 16, 16, 1)).astype("float32")
    support_y = np.repeat(np.arange(3), 2)
    query_x = RNG.random((5, 16, 16, 1)).astype("float32")
    other_queries = query_x.copy()
    other_queries[1:] = RNG.random((4, 16, 16, 1))

    with_bn = keras_meta.MAML(
        keras_meta.models.conv4(3, (16, 16, 1), filters=4),
        inner_lr=0.5,
        inner_steps=2,
    )
    with_bn.compile(loss=LOSS)
    # Transductive: a query's prediction depends on the other queries.
    a = predictions(with_bn, support_x, support_y, query_x, "transductive")
    b = predictions(
        with_bn, support_x, support_y, other_queries, "transductive"
    )
    assert np.abs(a[0] - b[0]).max() > 1e-3
    # Non-transductive: it does not.
    a = predictions(with_bn, support_x, support_y, query_x, "non_transductive")
    b = predictions(
        with_bn, support_x, support_y, other_queries, "non_transductive"
    )
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)

    no_bn = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    without_bn = keras_meta.MAML(no_bn, inner_lr=0.5, inner_steps=2)
    without_bn.compile(loss=LOSS)
    np.testing.assert_allclose(
        predictions(without_bn, support_x, support_y, query_x, "transductive"),
        predictions(
            without_bn, support_x, support_y, query_x, "non_transductive"
        ),
        rtol=1e-6,
        atol=1e-6,
    )


def test_bad_bn_mode():
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        keras_meta.MAML(keras_meta.models.mlp(), bn_mode="moving")
