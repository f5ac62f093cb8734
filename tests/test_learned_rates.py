"""Meta-SGD and MAML++ against closed forms, float64 finite differences and
hand-computed batch norm (numpy only), and their save, resume and export."""

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf

import keras_meta
from keras_meta.mamlpp import multi_step_loss_weights

RNG = np.random.default_rng(3)


def linear_regression(tasks=3, shots=6, queries=5, dim=4):
    return reference.linear_regression_tasks(RNG, tasks, shots, queries, dim)


def meta_step(model, x, y, variables):
    """`variables` before minus after one SGD(1) meta-update: the
    meta-gradient."""
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before = [v.numpy().copy() for v in variables]
    model.fit(x, y, batch_size=len(y), verbose=0, shuffle=False)
    return [b - v.numpy() for b, v in zip(before, variables)]


@pytest.mark.parametrize("first_order", [False, True])
def test_metasgd_one_step_meta_gradient_is_the_closed_form(
    float64, first_order
):
    """For weights phi and rates a: W = phi - a * g_s, dL/da = -g_s * g_q,
    dL/dphi = (I - H_s diag(a)) g_q (H_s the support Hessian; the transpose
    of the step's Jacobian I - diag(a) H_s), or g_q at first order."""
    x, y = linear_regression()
    learner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, use_bias=False)]
    )
    model = keras_meta.MetaSGD(learner, inner_lr=0.1, first_order=first_order)
    rates = RNG.uniform(0.02, 0.2, size=(4, 1))
    model.inner_lrs[0].assign(rates)
    phi = learner.trainable_variables[0].numpy().copy()
    grads_phi, grads_a = [], []
    for xs, ys, xq, yq in zip(x["support_x"], x["support_y"], x["query_x"], y):
        g_s = (2 / len(xs)) * xs.T @ (xs @ phi - ys)
        hessian = (2 / len(xs)) * xs.T @ xs
        adapted = phi - rates * g_s
        g_q = (2 / len(xq)) * xq.T @ (xq @ adapted - yq)
        grads_a.append(-g_s * g_q)
        jacobian_t = np.eye(4) if first_order else np.eye(4) - hessian * rates.T
        grads_phi.append(jacobian_t @ g_q)
    step_phi, step_a = meta_step(
        model, x, y, [learner.trainable_variables[0], model.inner_lrs[0]]
    )
    np.testing.assert_allclose(step_phi, np.mean(grads_phi, 0), rtol=1e-9)
    np.testing.assert_allclose(step_a, np.mean(grads_a, 0), rtol=1e-9)
    assert model.inner_lrs[0] in model.trainable_variables


# -- MAML++ -------------------------------------------------------------------


def tanh_net():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )


def numpy_net(params, x):
    w1, b1, w2, b2 = params
    hidden = np.tanh(x @ w1 + b1)
    return hidden, hidden @ w2 + b2


def numpy_grads(params, x, y):
    """Gradients of mean((net(x) - y)^2) by backprop, in numpy."""
    w1, b1, w2, b2 = params
    hidden, out = numpy_net(params, x)
    d_out = 2 * (out - y) / len(x)
    d_hidden = d_out @ w2.T * (1 - hidden**2)
    return [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_out, d_out.sum(0)]


def numpy_mamlpp_loss(params, rates, x, y, loss_weights, adapted=range(4)):
    """Mean over tasks of the weighted query losses after each of the inner
    steps, rates[i][j] for step i and variable j; the steps change the
    variables `adapted` only."""
    losses = []
    for xs, ys, xq, yq in zip(x["support_x"], x["support_y"], x["query_x"], y):
        fast = [p.copy() for p in params]
        total = 0.0
        for step, weight in enumerate(loss_weights):
            grads = numpy_grads(fast, xs, ys)
            fast = [
                f - rates[step][j] * g if j in adapted else f
                for j, (f, g) in enumerate(zip(fast, grads))
            ]
            total += weight * np.mean((numpy_net(fast, xq)[1] - yq) ** 2)
        losses.append(total)
    return np.mean(losses)


def regression_tasks(tasks=2, shots=5, queries=4):
    x, _ = linear_regression(tasks, shots, queries, dim=3)
    y = np.sin(x["query_x"].sum(-1, keepdims=True))
    x["support_y"] = np.sin(x["support_x"].sum(-1, keepdims=True))
    return x, y


@pytest.mark.parametrize(
    "iteration, clock, multi_step, option",
    [
        (0, None, True, {}),
        (3, None, True, {}),
        (0, None, False, {}),
        (0, 3.0, True, {}),
        # The shared loop's hooks combine MAML++ with the others' options:
        # rematerialised steps, and ANIL's head-only inner loop.
        (3, None, True, {"recompute": True}),
        (3, None, True, {"head_layers": 1}),
        (0, None, True, {"head_layers": 1, "recompute": True}),
    ],
)
def test_mamlpp_meta_gradient_matches_finite_differences(
    float64, iteration, clock, multi_step, option
):
    """Two steps with learned per-step, per-variable rates; the multi-step
    loss is its weighted sum of per-step query losses (weights at the
    iteration reached, or at `schedule_clock` once a callback has set it),
    or the last step's alone. With `head_layers=1` the steps move only the
    last Dense layer, and the meta-gradient still reaches the first."""
    x, y = regression_tasks()
    learner = tanh_net()
    model = keras_meta.MAMLPlusPlus(
        learner,
        inner_lr=0.1,
        inner_steps=2,
        multi_step_loss=multi_step,
        multi_step_loss_iterations=4,
        first_order_iterations=0,
        **option,
    )
    rates = RNG.uniform(0.05, 0.3, size=(2, 4))
    model.inner_lrs.assign(rates)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(iteration)
    if clock is not None:
        model.schedule_clock.assign(clock)
    reached = iteration if clock is None else clock
    params = [v.numpy().copy() for v in learner.trainable_variables]
    if multi_step:
        weights = multi_step_loss_weights(2, reached / 4).numpy()
        # The authors' schedule, by hand: uniform 1/2 at 0; at 3/4 of the
        # way the first weight is max(1/2 - 3/8, 0.015), the last 1 - that.
        assert np.allclose(
            weights, [0.5, 0.5] if reached == 0 else [0.125, 0.875]
        )
    else:
        weights = np.array([0.0, 1.0])
    adapted = [2, 3] if option.get("head_layers") else range(4)
    expected = reference.finite_differences(
        lambda a: numpy_mamlpp_loss(a[:4], a[4], x, y, weights, adapted),
        params + [rates],
    )
    variables = [*learner.trainable_variables, model.inner_lrs]
    steps = meta_step(model, x, y, variables)
    for got, want in zip(steps, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert np.abs(steps[0]).max() > 1e-4  # the first layer's, through steps


def test_mamlpp_derivative_order_switches_at_its_iteration(float64):
    """First order (the same as MAML's first-order update with the same
    rates) before `first_order_iterations`, second order from it, counted
    by the optimizer or by `schedule_clock` once set."""
    x, y = regression_tasks()
    updates = {}
    # The optimizer's iteration, or the schedule clock a callback set.
    runs = (("before", 1, -1.0), ("after", 2, -1.0), ("clock", 1, 2.0))
    for name, start, clock in runs:
        keras.utils.set_random_seed(7)
        learner = tanh_net()
        model = keras_meta.MAMLPlusPlus(
            learner,
            inner_lr=0.2,
            inner_steps=1,
            multi_step_loss=False,
            learned_rates=False,
            first_order_iterations=2,
        )
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        model.optimizer.build(model.trainable_variables)
        model.optimizer.iterations.assign(start)
        model.schedule_clock.assign(clock)
        updates[name] = meta_step(model, x, y, learner.trainable_variables)
    references = {}
    for name, first_order in (("before", True), ("after", False)):
        keras.utils.set_random_seed(7)
        maml = keras_meta.MAML(
            tanh_net(), inner_lr=0.2, first_order=first_order
        )
        references[name] = meta_step(
            maml, x, y, maml.learner.trainable_variables
        )
    references["clock"] = references["after"]
    for name in ("before", "after", "clock"):
        for a, b in zip(updates[name], references[name]):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert not np.allclose(references["before"][0], references["after"][0])


def bn_first_learner():
    """Inputs -> batch norm -> Dense: the batch statistics of every step are
    those of the inputs, whatever the weights."""
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.BatchNormalization(momentum=0.5),
            keras.layers.Dense(2),
        ]
    )


def test_mamlpp_each_step_has_its_own_batch_norm(float64):
    x, y = linear_regression(tasks=2, shots=6, queries=5, dim=3)
    x["support_y"] = (x["support_y"] > 0).astype("int64")[..., 0]
    y = (y > 0).astype("int64")[..., 0]
    learner = bn_first_learner()
    model = keras_meta.MAMLPlusPlus(
        learner, inner_lr=0.3, inner_steps=2, first_order_iterations=0
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    gamma, beta = model.bn_gammas[0], model.bn_betas[0]
    gamma.assign([[1.0, 2.0, 0.5], [3.0, 0.2, 1.5]])
    beta.assign([[0.1, -0.3, 0.2], [-1.0, 0.5, 0.0]])
    mean, variance = model.bn_means[0], model.bn_variances[0]
    mean.assign([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    variance.assign([[1.0, 1.0, 1.0], [2.0, 0.5, 3.0]])

    # Non-transductive predictions after k steps use step k-1's statistics
    # and scale and offset, with the adapted Dense weights.
    for steps in (1, 2):
        adapted = model.adapt(x["support_x"][0], x["support_y"][0], steps)
        kernel, bias = adapted[2].numpy(), adapted[3].numpy()
        row = steps - 1
        normalised = (x["query_x"][0] - mean.numpy()[row]) / np.sqrt(
            variance.numpy()[row] + learner.layers[0].epsilon
        )
        expected = (
            normalised * gamma.numpy()[row] + beta.numpy()[row]
        ) @ kernel
        got = model.adapted_predictions(x, steps, "non_transductive")[0]
        np.testing.assert_allclose(got, expected + bias, rtol=1e-7)

    # One meta-update (learning rate 0, so only the statistics move): each
    # step's running statistics take, per task, the support batch's and
    # then the query batch's moments, averaged over the tasks.
    before_mean, before_var = mean.numpy().copy(), variance.numpy().copy()
    model.fit(x, y, batch_size=2, verbose=0)
    expected_mean, expected_var = [], []
    for t in range(2):
        m, v = before_mean.copy(), before_var.copy()
        for batch in (x["support_x"][t], x["query_x"][t]):
            m = 0.5 * m + 0.5 * batch.mean(0)
            v = 0.5 * v + 0.5 * batch.var(0)
        expected_mean.append(m)
        expected_var.append(v)
    np.testing.assert_allclose(
        mean.numpy(), np.mean(expected_mean, 0), rtol=1e-7
    )
    np.testing.assert_allclose(
        variance.numpy(), np.mean(expected_var, 0), rtol=1e-7
    )


def numpy_per_step_bn_loss(params, x, y, loss_weights, epsilon):
    """MAML++'s multi-step loss for batch norm on the inputs, then Dense(1):
    step i normalises with each batch's own moments and its own scale and
    offset (`params`: kernel, bias, gammas [steps, 3], betas [steps, 3],
    rates [steps, 4] for gamma, beta, kernel, bias)."""
    kernel, bias, gammas, betas, rates = params

    def forward(x, w, b, step):
        normalised = (x - x.mean(0)) / np.sqrt(x.var(0) + epsilon)
        features = normalised * gammas[step] + betas[step]
        return features, features @ w + b

    losses = []
    for xs, ys, xq, yq in zip(x["support_x"], x["support_y"], x["query_x"], y):
        w, b, total = kernel, bias, 0.0
        for step, weight in enumerate(loss_weights):
            features, out = forward(xs, w, b, step)
            d_out = 2 * (out - ys) / len(xs)
            w = w - rates[step][2] * features.T @ d_out
            b = b - rates[step][3] * d_out.sum(0)
            total += weight * np.mean((forward(xq, w, b, step)[1] - yq) ** 2)
        losses.append(total)
    return np.mean(losses)


@pytest.mark.parametrize("recompute", [False, True])
def test_mamlpp_per_step_batch_norm_gradients_match_finite_differences(
    float64, recompute
):
    """The meta-gradient reaches each step's own scale and offset and each
    step's rates, rematerialised or not (the recomputed step reads the
    per-step parameters as variables)."""
    x, y = regression_tasks()
    learner = keras.Sequential(
        [
            keras.Input((3,)),
            keras_meta.layers.BatchNormalization(),
            keras.layers.Dense(1),
        ]
    )
    model = keras_meta.MAMLPlusPlus(
        learner,
        inner_lr=0.1,
        inner_steps=2,
        multi_step_loss_iterations=4,
        first_order_iterations=0,
        recompute=recompute,
    )
    model.bn_gammas[0].assign(RNG.uniform(0.5, 1.5, (2, 3)))
    model.bn_betas[0].assign(RNG.normal(0, 0.3, (2, 3)))
    model.inner_lrs.assign(RNG.uniform(0.05, 0.3, size=(2, 4)))
    variables = [
        *learner.layers[1].trainable_variables,
        model.bn_gammas[0],
        model.bn_betas[0],
        model.inner_lrs,
    ]
    params = [v.numpy().copy() for v in variables]
    expected = reference.finite_differences(
        lambda p: numpy_per_step_bn_loss(
            p, x, y, [0.5, 0.5], learner.layers[0].epsilon
        ),
        params,
    )
    steps = meta_step(model, x, y, variables)
    for got, want in zip(steps, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert np.abs(steps[2]).max() > 1e-4  # the per-step scales learn


def conv_episodes(tasks=2, ways=3):
    x = {
        "support_x": RNG.random((tasks, ways * 2, 12, 12, 1), "f4"),
        "support_y": np.tile(np.repeat(np.arange(ways), 2), (tasks, 1)),
        "query_x": RNG.random((tasks, ways * 2, 12, 12, 1), "f4"),
    }
    return x, np.tile(np.repeat(np.arange(ways), 2), (tasks, 1))


def logged_scalars(log_dir):
    """`{tag: last value}` of the scalars in a TensorBoard log folder."""
    values = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                values[value.tag] = float(tf.make_ndarray(value.tensor))
    return values


@pytest.mark.integration  # through files or a compiler: second tier
@pytest.mark.parametrize("name", ["metasgd", "mamlpp"])
def test_save_load_resume_and_export_keep_rates_and_statistics(tmp_path, name):
    def build():
        keras.utils.set_random_seed(0)
        learner = keras_meta.models.conv4(3, (12, 12, 1), 4, "stride")
        if name == "metasgd":
            return keras_meta.MetaSGD(learner, inner_lr=0.2)
        return keras_meta.MAMLPlusPlus(
            learner,
            inner_lr=0.2,
            inner_steps=2,
            multi_step_loss_iterations=3,
            first_order_iterations=1,
        )

    x, y = conv_episodes()
    model = build()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss)
    logger = keras_meta.callbacks.LearnedRates(tmp_path / "rates")
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[logger])
    # TensorBoard holds the rates after the last epoch: Meta-SGD each
    # weight's mean rate, MAML++ each step's rate of each weight.
    names = [v.path for v in model.learner.trainable_variables]
    if name == "metasgd":
        expected = {
            f"inner_lr/{n}": np.mean(r.numpy())
            for n, r in zip(names, model.inner_lrs)
        }
    else:
        # Per-step batch-norm scale and offset are meta-learned, not adapted.
        expected = {
            f"inner_lr/step_{i}/{n}": model.inner_lrs.numpy()[i, j]
            for i in range(2)
            for j, n in enumerate(names)
            if not n.endswith(("/gamma", "/beta"))
        }
    logged = logged_scalars(tmp_path / "rates")
    assert logged.keys() == expected.keys()
    for tag, value in expected.items():
        assert logged[tag] == pytest.approx(value, rel=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 2
    # Resumed training follows the uninterrupted one (MSL and DA included).
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    loaded.fit(x, y, batch_size=2, epochs=2, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    # The SavedModel adapts with the learned rates and per-step batch norm.
    model.export(tmp_path / "exported")
    serve = tf.saved_model.load(str(tmp_path / "exported")).signatures[
        "serving_default"
    ]
    logits = serve(
        support_x=tf.constant(x["support_x"][0]),
        support_y=tf.constant(x["support_y"][0], tf.int32),
        query_x=tf.constant(x["query_x"][0]),
    )["logits"]
    np.testing.assert_allclose(
        logits, model.adapted_predictions(x)[0], atol=1e-5
    )
