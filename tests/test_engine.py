"""The engine's contract: public hooks a new algorithm can build on, the
Keras conventions kept (learner losses, sample weights, evaluation that
changes nothing, adapted models, XLA), and the run loop's pure pieces.

Expected values come from numpy closed forms, never from keras_meta.
"""

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf

import keras_meta
from keras_meta.cli.loop import epoch_segments

RNG = np.random.default_rng(1)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# -- a new algorithm over the public hooks ----------------------------------


class FirstOrderMAML(keras_meta.MetaLearner):
    """First-order MAML written anew over the public hooks only."""

    second_order = False

    def adapt_task(self, weights, state, task, steps, differentiable):
        return keras_meta.inner_loop.gradient_descent(
            self.support_loss(task),
            weights,
            state,
            steps,
            self.inner_lr,
            differentiable,
        )


def small_classifier(seed):
    keras.utils.set_random_seed(seed)
    return keras_meta.models.conv4(3, (12, 12, 1), 4, "stride")


def classification_episode(tasks=4, shots=2, queries=3, ways=3):
    x = {
        "support_x": RNG.random((tasks, ways * shots, 12, 12, 1), "f4"),
        "support_y": np.tile(np.repeat(np.arange(ways), shots), (tasks, 1)),
        "query_x": RNG.random((tasks, ways * queries, 12, 12, 1), "f4"),
    }
    return x, np.tile(np.repeat(np.arange(ways), queries), (tasks, 1))


def one_update(model, x, y, **fit_kwargs):
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS)
    before = [v.numpy().copy() for v in model.learner.trainable_variables]
    model.fit(x, y, batch_size=len(y), verbose=0, **fit_kwargs)
    after = [v.numpy() for v in model.learner.trainable_variables]
    return [b - a for b, a in zip(before, after)]


def test_a_new_algorithm_over_the_public_hooks_matches_fomaml():
    x, y = classification_episode()
    ours = one_update(
        FirstOrderMAML(small_classifier(0), inner_lr=0.3, inner_steps=2), x, y
    )
    reference = one_update(
        keras_meta.MAML(
            small_classifier(0), inner_lr=0.3, inner_steps=2, first_order=True
        ),
        x,
        y,
    )
    assert max(np.abs(r).max() for r in reference) > 1e-4
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


# -- learner losses and sample weights, by the closed form ------------------


def linear_regression_tasks():
    return reference.linear_regression_tasks(RNG)


def closed_form(w, x, query_y, alpha, l2=0.0, weights=None):
    """One-step MAML meta-gradient of (1/n)|Xw - y|^2 + l2 |w|^2, query
    examples weighted by `weights` [T, Q] (Keras: mean of weight * loss)."""
    grads = []
    for t, (xs, ys, xq, yq) in enumerate(
        zip(x["support_x"], x["support_y"], x["query_x"], query_y)
    ):
        n, dim = xs.shape
        inner = (2 / n) * xs.T @ (xs @ w - ys) + 2 * l2 * w
        adapted = w - alpha * inner
        jacobian = np.eye(dim) - alpha * (
            (2 / n) * xs.T @ xs + 2 * l2 * np.eye(dim)
        )
        s = np.ones(len(xq)) if weights is None else weights[t]
        outer = (2 / len(xq)) * xq.T @ (s[:, None] * (xq @ adapted - yq))
        outer = outer + 2 * l2 * adapted
        grads.append(jacobian @ outer)
    return np.mean(grads, axis=0)


def linear_maml(dim, alpha, l2=0.0):
    regularizer = keras.regularizers.L2(l2) if l2 else None
    learner = keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(
                1, use_bias=False, kernel_regularizer=regularizer
            ),
        ]
    )
    return keras_meta.MAML(learner, inner_lr=alpha)


def regression_update(model, x, y, **fit_kwargs):
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = model.learner.trainable_variables[0].numpy().copy()
    model.fit(x, y, batch_size=len(y), verbose=0, shuffle=False, **fit_kwargs)
    return before, before - model.learner.trainable_variables[0].numpy()


def test_learner_regularisation_losses_join_both_loops(float64):
    x, y = linear_regression_tasks()
    w, step = regression_update(linear_maml(4, 0.05, l2=0.25), x, y)
    expected = closed_form(w, x, y, 0.05, l2=0.25)
    assert np.abs(expected - closed_form(w, x, y, 0.05)).max() > 1e-3
    np.testing.assert_allclose(step, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("per", ["example", "task"])
def test_sample_weights_scale_the_query_losses(float64, per):
    x, y = linear_regression_tasks()
    if per == "example":
        weights = RNG.uniform(0.0, 2.0, size=y.shape[:2])
        given = weights
    else:
        given = RNG.uniform(0.0, 2.0, size=len(y))
        weights = np.repeat(given[:, None], y.shape[1], axis=1)
    w, step = regression_update(linear_maml(4, 0.05), x, y, sample_weight=given)
    np.testing.assert_allclose(
        step, closed_form(w, x, y, 0.05, weights=weights), rtol=1e-9, atol=1e-12
    )


def test_reptile_refuses_sample_weights():
    x, y = classification_episode()
    model = keras_meta.Reptile(small_classifier(0), inner_steps=2)
    model.compile(optimizer="sgd", loss=LOSS)
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(x, y, sample_weight=np.ones(len(y)), verbose=0)


# -- evaluation, adapted models, XLA ------------------------------------------


def test_evaluation_changes_nothing_on_the_model():
    x, y = classification_episode()
    model = keras_meta.MAML(
        small_classifier(0), inner_lr=0.3, eval_inner_steps=2
    )
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    model.evaluate(x, y, verbose=0)
    test_function = model.test_function
    episodes = tf.data.Dataset.from_tensors((x, y)).repeat()
    scores = {
        (steps, mode): keras_meta.evaluate_few_shot(
            model, episodes, 8, inner_steps=steps, bn_mode=mode
        ).mean
        for steps in (0, 3)
        for mode in ("transductive", "non_transductive")
    }
    assert (model.eval_inner_steps, model.bn_mode) == (2, "transductive")
    assert model.test_function is test_function  # nothing retraced
    # And the scores are those of the settings asked for.
    for (steps, mode), score in scores.items():
        y_pred = model.adapted_predictions(x, steps, mode)
        hits = np.argmax(y_pred, -1) == y
        assert score == pytest.approx(hits[:, :].mean(axis=1).mean())


def test_adapted_learner_is_a_ready_keras_model():
    x, _ = classification_episode()
    model = keras_meta.MAML(
        small_classifier(0), inner_lr=0.3, eval_inner_steps=2
    )
    model.compile(optimizer="adam", loss=LOSS)
    adapted = model.adapted_learner(x["support_x"][0], x["support_y"][0])
    assert isinstance(adapted, keras.Model)
    query = x["query_x"][0]
    transductive = model.adapted_predictions(x, bn_mode="transductive")[0]
    alone = model.adapted_predictions(x, bn_mode="non_transductive")[0]
    np.testing.assert_allclose(adapted(query), alone, atol=1e-5)
    # (Training mode also updates the copy's moving statistics: last.)
    np.testing.assert_allclose(
        adapted(query, training=True), transductive, atol=1e-5
    )
    # The meta-learner's own learner is untouched.
    assert not np.allclose(
        adapted.trainable_variables[0].numpy(),
        model.learner.trainable_variables[0].numpy(),
    )


@pytest.mark.integration  # through files or a compiler: second tier
def test_xla_compiled_steps_match_the_plain_ones():
    x, y = classification_episode()
    updates = []
    for jit in (False, True):
        model = keras_meta.MAML(
            small_classifier(0), inner_lr=0.3, inner_steps=2
        )
        model.compile(
            optimizer=keras.optimizers.SGD(1.0), loss=LOSS, jit_compile=jit
        )
        before = [v.numpy().copy() for v in model.learner.trainable_variables]
        model.fit(x, y, batch_size=len(y), verbose=0)
        updates.append(
            [
                b - v.numpy()
                for b, v in zip(before, model.learner.trainable_variables)
            ]
        )
    # float32 through two inner steps, summed in another order by XLA's
    # kernels than by oneDNN's: updates of size ~7 agree to ~3e-5 relative.
    for a, b in zip(*updates):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- the run loop's pure pieces ------------------------------------------------


@pytest.mark.parametrize(
    "start, total, every, expected",
    [
        (0, 1000, 250, [(0, 4, 250)]),
        (0, 1100, 250, [(0, 4, 250), (4, 5, 100)]),
        (260, 1000, 250, [(1, 2, 240), (2, 4, 250)]),
        (260, 600, 250, [(1, 2, 240), (2, 3, 100)]),
        (1000, 1000, 250, []),
        (0, 30, 250, [(0, 1, 30)]),
    ],
)
def test_epoch_segments_cover_every_iteration_once(
    start, total, every, expected
):
    segments = epoch_segments(start, total, every)
    assert segments == expected
    covered = sum(steps * (epochs - first) for first, epochs, steps in segments)
    assert covered == total - start


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_budget_stops_training_and_anneals_over_the_time_spent():
    x, y = classification_episode()
    model = keras_meta.MAML(small_classifier(0), inner_lr=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
    clock = FakeClock()
    budget = keras_meta.callbacks.TimeBudget(
        100.0, anneal="linear", clock=clock
    )
    rates = []

    class Tick(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append(float(self.model.optimizer.learning_rate))
            clock.now += 30.0  # every step takes 30 s

    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    history = model.fit(
        dataset,
        steps_per_epoch=10,
        epochs=1,
        callbacks=[budget, Tick()],
        verbose=0,
    )
    # Steps start at 0, 30, 60 and 90 s; the budget is spent after the 4th.
    assert int(model.optimizer.iterations.numpy()) == 4
    np.testing.assert_allclose(rates, [0.5, 0.5 * 0.7, 0.5 * 0.4, 0.5 * 0.1])
    assert budget.spent and budget.elapsed == pytest.approx(120.0)
    assert history.history["train_seconds"] == [pytest.approx(120.0)]


@pytest.mark.parametrize(
    "schedule_iterations, expected",
    # At 0, 30, 60 and 90 s of a 100 s budget: 0.3 of 50 iterations is 15;
    # of 2 iterations, the 1, 2, 3 iterations done are further along.
    [(50, [0.0, 15.0, 30.0, 45.0]), (2, [0.0, 1.0, 2.0, 3.0])],
)
def test_time_budget_sets_the_schedule_clock(schedule_iterations, expected):
    """A timed run's MAML++ schedules take the share of the time that they
    take of `schedule_iterations`: the iteration they read is the fraction
    of the budget spent times it, or the iterations done if more."""
    x, y = classification_episode()
    model = keras_meta.MAMLPlusPlus(
        small_classifier(0), inner_lr=0.3, inner_steps=2
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    clock = FakeClock()
    budget = keras_meta.callbacks.TimeBudget(
        100.0, clock=clock, schedule_iterations=schedule_iterations
    )
    seen = []

    class Tick(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.schedule_iteration()))
            clock.now += 30.0

    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    callbacks = [budget, Tick()]
    model.fit(dataset, steps_per_epoch=10, callbacks=callbacks, verbose=0)
    np.testing.assert_allclose(seen, expected)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule_iterations"):
        keras_meta.callbacks.TimeBudget(schedule_iterations=50)


def test_mamlpp_saved_before_the_schedule_clock_still_loads():
    """A store without the last variable (`schedule_clock`, added later)
    loads every other variable and leaves the clock unset."""

    def build(seed):
        return keras_meta.MAMLPlusPlus(
            small_classifier(seed), inner_lr=0.3, inner_steps=2
        )

    saved, loaded = build(0), build(1)
    saved.inner_lrs.assign(saved.inner_lrs.numpy() * 2.0)
    saved.schedule_clock.assign(7.0)
    own = saved._trainable_variables + saved._non_trainable_variables
    assert own[-1] is saved.schedule_clock
    old_store = {str(i): v.numpy() for i, v in enumerate(own[:-1])}
    loaded.schedule_clock.assign(3.0)
    loaded.load_own_variables(old_store)
    np.testing.assert_allclose(loaded.inner_lrs.numpy(), 0.6, rtol=1e-6)
    assert float(loaded.schedule_clock.numpy()) == -1.0
    full_store = {**old_store, str(len(own) - 1): np.float32(7.0)}
    loaded.load_own_variables(full_store)
    assert float(loaded.schedule_clock.numpy()) == 7.0
    with pytest.raises(ValueError):
        loaded.load_own_variables({"0": own[0].numpy()})


@pytest.mark.parametrize("algorithm", ["maml", "anil"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_moving_statistics_become_their_mean_over_the_tasks(
    float64, jit_compile, algorithm
):
    """Batch norm on the inputs: each task's moving statistics move with its
    support set (the inner step) and then its query set (the meta-loss),
    `m <- 0.5 m + 0.5 batch`; after the meta-update the variables hold the
    mean over the tasks (numpy): MAML's tasks on their own pool and in the
    loop, ANIL's vectorized in two groups of three."""
    tasks, dim = 6, 3
    x = {
        "support_x": RNG.normal(1.0, 2.0, (tasks, 6, dim)),
        "support_y": RNG.integers(0, 2, (tasks, 6)),
        "query_x": RNG.normal(-1.0, 0.5, (tasks, 4, dim)),
    }
    y = RNG.integers(0, 2, (tasks, 4))
    learner = keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.BatchNormalization(momentum=0.5),
            keras.layers.Dense(2),
        ]
    )
    if algorithm == "maml":
        model = keras_meta.MAML(learner, inner_lr=0.1)
    else:
        model = keras_meta.ANIL(learner, inner_lr=0.1)
        model.vectorize_tasks = True
        model.tasks_per_group = 4
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=LOSS, jit_compile=jit_compile
    )
    model.fit(x, y, batch_size=tasks, verbose=0)
    mean, variance = np.zeros((tasks, dim)), np.ones((tasks, dim))
    for part in (x["support_x"], x["query_x"]):
        mean = 0.5 * mean + 0.5 * part.mean(axis=1)
        variance = 0.5 * variance + 0.5 * part.var(axis=1)
    bn = learner.layers[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean.mean(0), rtol=1e-9)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), variance.mean(0), rtol=1e-9
    )
