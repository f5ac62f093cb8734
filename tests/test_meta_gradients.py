"""Meta-gradients against closed forms and float64 finite differences.

Every expected value here is computed with numpy alone, never by keras_meta.
A meta-gradient is read off one `fit` step with `SGD(learning_rate=1)`:
the step moves the initialisation by exactly minus the meta-gradient.
"""

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf

import keras_meta
from keras_meta import inner_loop

RNG = np.random.default_rng(0)


def linear_learner(dim):
    return keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(1, use_bias=False)]
    )


def meta_step(model, episode, learning_rate=1.0):
    """Weights before and after one meta-update on `episode` (numpy)."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
        loss=model_loss(model),
    )
    before = [v.numpy().copy() for v in model.learner.trainable_variables]
    x, y = episode
    model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    after = [v.numpy() for v in model.learner.trainable_variables]
    return before, after


def model_loss(model):
    if model.learner.outputs[0].shape[-1] == 1:
        return "mse"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def regression_tasks(tasks=3, shots=6, queries=5, dim=4):
    support_x = RNG.normal(size=(tasks, shots, dim))
    query_x = RNG.normal(size=(tasks, queries, dim))
    true_w = RNG.normal(size=(tasks, dim, 1))
    support_y = support_x @ true_w + 0.1 * RNG.normal(size=(tasks, shots, 1))
    query_y = query_x @ true_w
    x = {"support_x": support_x, "support_y": support_y, "query_x": query_x}
    return x, query_y


def closed_form_meta_gradient(w, x, query_y, alpha, steps, second_order):
    """MAML's meta-gradient for linear least squares, by the closed form.

    Inner loss (1/n)|Xs w - ys|^2 has gradient (2/n) Xs^T (Xs w - ys), so one
    step is the affine map w -> A w + b with A = I - (2a/n) Xs^T Xs: the
    Jacobian of k steps is A^k (A is symmetric).
    """
    grads = []
    for xs, ys, xq, yq in zip(
        x["support_x"], x["support_y"], x["query_x"], query_y
    ):
        n, dim = xs.shape
        jacobian_step = np.eye(dim) - (2 * alpha / n) * xs.T @ xs
        adapted = w
        for _ in range(steps):
            adapted = adapted - alpha * (2 / n) * xs.T @ (xs @ adapted - ys)
        query_grad = (2 / len(xq)) * xq.T @ (xq @ adapted - yq)
        if second_order:
            query_grad = (
                np.linalg.matrix_power(jacobian_step, steps) @ query_grad
            )
        grads.append(query_grad)
    return np.mean(grads, axis=0)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_matches_closed_form_for_linear_regression(float64, steps):
    alpha = 0.05
    episode = regression_tasks()
    first = keras_meta.MAML(
        linear_learner(4), inner_lr=alpha, inner_steps=steps
    )
    w0 = first.learner.trainable_variables[0].numpy().copy()
    second_order = closed_form_meta_gradient(
        w0, *episode, alpha, steps, second_order=True
    )
    first_order = closed_form_meta_gradient(
        w0, *episode, alpha, steps, second_order=False
    )
    assert np.abs(second_order - first_order).max() > 1e-3  # they differ

    before, after = meta_step(first, episode)
    np.testing.assert_allclose(
        before[0] - after[0], second_order, rtol=1e-9, atol=1e-12
    )

    fomaml = keras_meta.MAML(
        linear_learner(4), inner_lr=alpha, inner_steps=steps, first_order=True
    )
    fomaml.learner.set_weights([w0])
    before, after = meta_step(fomaml, episode)
    np.testing.assert_allclose(
        before[0] - after[0], first_order, rtol=1e-9, atol=1e-12
    )


# -- finite differences on a small two-layer network --------------------


def two_layer_learner(dim, hidden, outputs):
    return keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(outputs),
        ]
    )


def numpy_forward(params, x):
    w1, b1, w2, b2 = params
    hidden = np.tanh(x @ w1 + b1)
    return hidden, hidden @ w2 + b2


def numpy_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def numpy_support_gradient(params, x, labels):
    """Backprop of mean softmax cross-entropy through the two-layer net."""
    w1, b1, w2, b2 = params
    hidden, logits = numpy_forward(params, x)
    d_logits = reference.cross_entropy_logit_gradient(logits, labels)
    d_hidden = d_logits @ w2.T * (1 - hidden**2)
    return [
        x.T @ d_hidden,
        d_hidden.sum(0),
        hidden.T @ d_logits,
        d_logits.sum(0),
    ]


def numpy_query_logits(params, x):
    return numpy_forward(params, x)[1]


def numpy_meta_loss(
    params,
    x,
    query_y,
    alpha,
    steps,
    adapt_indices,
    support_gradient=numpy_support_gradient,
    query_logits=numpy_query_logits,
):
    """Mean query loss over tasks after `steps` gradient steps on the
    support set (`support_gradient`) of the parameters `adapt_indices`;
    the two-layer net unless other functions are given."""
    losses = []
    for t in range(len(query_y)):
        fast = [p.copy() for p in params]
        for _ in range(steps):
            grads = support_gradient(fast, x["support_x"][t], x["support_y"][t])
            for i in adapt_indices:
                fast[i] = fast[i] - alpha * grads[i]
        logits = query_logits(fast, x["query_x"][t])
        losses.append(numpy_cross_entropy(logits, query_y[t]))
    return np.mean(losses)


def classification_tasks(tasks=2, ways=3, shots=2, queries=3, dim=4):
    support_y = np.tile(np.repeat(np.arange(ways), shots), (tasks, 1))
    query_y = np.tile(np.repeat(np.arange(ways), queries), (tasks, 1))
    centers = RNG.normal(size=(tasks, ways, dim))
    support_x = np.take_along_axis(
        centers, support_y[..., None], axis=1
    ) + 0.5 * RNG.normal(size=(tasks, ways * shots, dim))
    query_x = np.take_along_axis(
        centers, query_y[..., None], axis=1
    ) + 0.5 * RNG.normal(size=(tasks, ways * queries, dim))
    x = {"support_x": support_x, "support_y": support_y, "query_x": query_x}
    return x, query_y


@pytest.mark.parametrize(
    "algorithm, steps, adapt_indices",
    [
        ("maml", 2, [0, 1, 2, 3]),
        # Rematerialised steps, run as a tf.while_loop.
        ("maml_recompute", 3, [0, 1, 2, 3]),
        ("anil", 2, [2, 3]),
    ],
)
def test_meta_gradient_matches_finite_differences(
    float64, algorithm, steps, adapt_indices
):
    alpha = 0.5
    learner = two_layer_learner(4, 5, 3)
    if algorithm.startswith("maml"):
        model = keras_meta.MAML(
            learner,
            inner_lr=alpha,
            inner_steps=steps,
            recompute=algorithm == "maml_recompute",
        )
    else:
        model = keras_meta.ANIL(learner, inner_lr=alpha, inner_steps=steps)
    x, query_y = classification_tasks()
    params = [v.numpy().copy() for v in learner.trainable_variables]
    expected = reference.finite_differences(
        lambda p: numpy_meta_loss(p, x, query_y, alpha, steps, adapt_indices),
        params,
    )
    before, after = meta_step(model, (x, query_y))
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=1e-6, atol=1e-8)
    # The body moved: ANIL's meta-gradient reaches it through the head.
    assert np.abs(before[0] - after[0]).max() > 1e-4


def numpy_batch_norm_features(params, x):
    """Dense + tanh, then batch norm with the batch's own statistics
    (Keras's epsilon 1e-3): ANIL's body in training mode."""
    w1, b1, gamma, beta = params[:4]
    return reference.batch_norm(np.tanh(x @ w1 + b1), gamma, beta, 1e-3)[0]


def numpy_head_steps(features, labels, kernel, bias, alpha, steps):
    """A linear softmax head after `steps` gradient steps of size `alpha`
    on mean cross-entropy over `features`: `(kernel, bias)`."""
    for _ in range(steps):
        d_logits = reference.cross_entropy_logit_gradient(
            features @ kernel + bias, labels
        )
        kernel = kernel - alpha * features.T @ d_logits
        bias = bias - alpha * d_logits.sum(0)
    return kernel, bias


def batch_norm_learner(outputs, batch_norm=keras.layers.BatchNormalization):
    """Dense(5, tanh), batch norm with random scale and offset, Dense."""
    learner = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh"),
            batch_norm(),
            keras.layers.Dense(outputs),
        ]
    )
    learner.layers[1].gamma.assign(RNG.uniform(0.5, 1.5, 5))
    learner.layers[1].beta.assign(RNG.normal(0, 0.3, 5))
    return learner


def numpy_anil_batch_norm_meta_loss(params, x, query_y, alpha, steps):
    """Mean query loss over tasks after `steps` head-only steps, each task's
    support and query normalised by their own batch statistics."""
    losses = []
    for t in range(len(query_y)):
        support = numpy_batch_norm_features(params, x["support_x"][t])
        w2, b2 = numpy_head_steps(
            support, x["support_y"][t], params[4], params[5], alpha, steps
        )
        query = numpy_batch_norm_features(params, x["query_x"][t])
        losses.append(numpy_cross_entropy(query @ w2 + b2, query_y[t]))
    return np.mean(losses)


def numpy_batch_norm_support_gradient(params, x, labels):
    """Backprop of mean softmax cross-entropy through Dense + tanh, batch
    norm on the batch's statistics (epsilon 1e-3) and a linear head."""
    w1, b1, gamma, beta, w2, b2 = params
    hidden = np.tanh(x @ w1 + b1)
    features, backward = reference.batch_norm(hidden, gamma, beta, 1e-3)
    d_logits = reference.cross_entropy_logit_gradient(
        features @ w2 + b2, labels
    )
    d_features = d_logits @ w2.T
    d_hidden, d_gamma = backward(d_features)
    d_pre = d_hidden * (1 - hidden**2)
    return [
        x.T @ d_pre,
        d_pre.sum(0),
        d_gamma,
        d_features.sum(0),
        features.T @ d_logits,
        d_logits.sum(0),
    ]


def numpy_batch_norm_logits(params, x):
    """The Dense-batch norm-Dense learner's logits, normalised with `x`'s
    own batch statistics."""
    return numpy_batch_norm_features(params, x) @ params[4] + params[5]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_maml_through_batch_norm_matches_finite_differences(dtype):
    """Second-order MAML differentiates the inner gradient through batch
    norm: with `keras_meta.layers.BatchNormalization` (the fused kernel in
    float32, Keras's pass with exact moments in float64) the meta-gradient
    equals float64 finite differences of numpy's meta-loss. Keras's own
    layer misses its second-derivative terms (tests/test_layers.py)."""
    alpha, steps = 0.5, 2
    learner = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh", dtype=dtype),
            keras_meta.layers.BatchNormalization(dtype=dtype),
            keras.layers.Dense(3, dtype=dtype),
        ]
    )
    learner.layers[1].gamma.assign(RNG.uniform(0.5, 1.5, 5))
    learner.layers[1].beta.assign(RNG.normal(0, 0.3, 5))
    model = keras_meta.MAML(learner, inner_lr=alpha, inner_steps=steps)
    x, query_y = classification_tasks(tasks=3)
    x = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in x.items()}
    params = [v.numpy().astype("float64") for v in learner.trainable_variables]
    expected = reference.finite_differences(
        lambda p: numpy_meta_loss(
            p,
            x,
            query_y,
            alpha,
            steps,
            range(len(p)),
            numpy_batch_norm_support_gradient,
            numpy_batch_norm_logits,
        ),
        params,
    )
    before, after = meta_step(model, (x, query_y))
    tolerance = 2e-4 if dtype == "float32" else 1e-6
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    "tasks_per_group, batch_norm",
    [
        (None, keras.layers.BatchNormalization),
        (None, keras_meta.layers.BatchNormalization),
        (1, keras.layers.BatchNormalization),
        (4, keras_meta.layers.BatchNormalization),
        (8, keras.layers.BatchNormalization),
    ],
)
def test_anil_with_batch_norm_body_matches_finite_differences(
    float64, tasks_per_group, batch_norm
):
    """ANIL one task at a time (None, its default) or vectorized in groups
    (6 tasks: groups of 1, 3 or all 6): each task's batch norm keeps its
    own statistics, and the mean over groups is the mean over tasks. With
    keras-meta's batch norm the body runs once on support and query
    together (`batch_segments`); with Keras's, once per set."""
    alpha, steps = 0.5, 2
    learner = batch_norm_learner(3, batch_norm)
    split = keras_meta.learner_parts.LearnerSplit(learner, 1)
    assert split.segments_apply == (
        batch_norm is keras_meta.layers.BatchNormalization
    )
    model = keras_meta.ANIL(learner, inner_lr=alpha, inner_steps=steps)
    if tasks_per_group is not None:
        model.vectorize_tasks = True
        model.tasks_per_group = tasks_per_group
    x, query_y = classification_tasks(tasks=6)
    params = [v.numpy().copy() for v in learner.trainable_variables]
    expected = reference.finite_differences(
        lambda p: numpy_anil_batch_norm_meta_loss(p, x, query_y, alpha, steps),
        params,
    )
    before, after = meta_step(model, (x, query_y))
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("tasks_per_group", [None, 4])
def test_pretrain_fresh_head_matches_numpy(float64, tasks_per_group):
    """Evaluation fits a zero-initialised head with `steps` gradient steps on
    each task's support features (the body frozen, batch norm on the task's
    own batch), vectorized in groups of 3 or one task at a time."""
    alpha, steps, ways = 0.5, 3, 3
    learner = batch_norm_learner(7)
    model = keras_meta.Pretrain(
        learner, inner_lr=alpha, eval_inner_steps=steps, ways=ways
    )
    if tasks_per_group is None:
        model.vectorize_tasks = False
    else:
        model.tasks_per_group = tasks_per_group
    model.compile(loss=model_loss(model))
    x, _ = classification_tasks(tasks=6, ways=ways)
    params = [v.numpy() for v in learner.trainable_variables]
    expected = []
    for t in range(6):
        support = numpy_batch_norm_features(params, x["support_x"][t])
        labels = x["support_y"][t]
        kernel, bias = numpy_head_steps(
            support, labels, np.zeros((5, ways)), np.zeros(ways), alpha, steps
        )
        query = numpy_batch_norm_features(params, x["query_x"][t])
        expected.append(query @ kernel + bias)
    got = model.predict(x, batch_size=6, verbose=0)
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-9, atol=1e-12)


# -- Reptile --------------------------------------------------------------


def numpy_reptile_weights(w, x, alpha, steps, optimizer, moment=None, count=0):
    """Per-task adapted weights of linear least squares, in numpy, and
    (Adam) each task's final second moment; Adam continues from `moment`
    and `count` steps if given, else starts fresh."""
    adapted, moments = [], []
    for xs, ys in zip(x["support_x"], x["support_y"]):
        n = len(xs)
        v = np.zeros_like(w) if moment is None else moment.copy()
        wt = w.copy()
        for step in range(count + 1, count + steps + 1):
            g = (2 / n) * xs.T @ (xs @ wt - ys)
            if optimizer == "sgd":
                wt = wt - alpha * g
            else:  # Adam with beta1 = 0
                v = 0.999 * v + 0.001 * g**2
                v_hat = v / (1 - 0.999**step)
                wt = wt - alpha * g / (np.sqrt(v_hat) + 1e-8)
        adapted.append(wt)
        moments.append(v)
    if moment is None and count == 0:
        return np.stack(adapted)
    return np.stack(adapted), np.stack(moments)


@pytest.mark.parametrize(
    "optimizer, steps",
    [
        ("sgd", 4),
        ("adam", 4),
        # More Adam steps than are unrolled: the same update through the loop.
        ("adam", inner_loop.MAX_UNROLLED_ADAM_STEPS + 2),
    ],
)
def test_reptile_update_is_interpolation_towards_mean_adapted_weights(
    float64, optimizer, steps
):
    alpha, eps = 0.05, 0.3
    episode = regression_tasks(tasks=4)
    model = keras_meta.Reptile(
        linear_learner(4),
        inner_lr=alpha,
        inner_steps=steps,
        inner_optimizer=optimizer,
    )
    phi = model.learner.trainable_variables[0].numpy().copy()
    mean_w = numpy_reptile_weights(
        phi, episode[0], alpha, steps, optimizer
    ).mean(axis=0)
    before, after = meta_step(model, episode, learning_rate=eps)
    np.testing.assert_allclose(before[0], phi)
    np.testing.assert_allclose(
        after[0], phi + eps * (mean_w - phi), rtol=1e-9, atol=1e-12
    )


def test_reptile_shares_adams_state_across_tasks_and_iterations(float64):
    """Each task starts from the stored Adam state; after the meta-update
    it holds the tasks' mean second moment and `steps` more steps; a second
    meta-update continues from it; evaluation leaves it alone."""
    alpha, eps, steps = 0.05, 0.3, 3
    model = keras_meta.Reptile(
        linear_learner(4),
        inner_lr=alpha,
        inner_steps=steps,
        inner_optimizer="adam",
        shared_adam_state=True,
    )
    phi = model.learner.trainable_variables[0].numpy().copy()
    moment, count = np.zeros_like(phi), 0
    for _ in range(2):
        episode = regression_tasks(tasks=4)
        adapted, moments = numpy_reptile_weights(
            phi, episode[0], alpha, steps, "adam", moment, count
        )
        _, after = meta_step(model, episode, learning_rate=eps)
        phi = phi + eps * (adapted.mean(axis=0) - phi)
        moment, count = moments.mean(axis=0), count + steps
        np.testing.assert_allclose(after[0], phi, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            model.adam_moments[0].numpy(), moment, rtol=1e-9, atol=1e-15
        )
        assert model.adam_count.numpy() == count
    model.evaluate(*regression_tasks(tasks=4), verbose=0)
    np.testing.assert_allclose(model.adam_moments[0].numpy(), moment)
    assert model.adam_count.numpy() == count


# -- adapt ------------------------------------------------------------------


def test_anil_adapt_changes_only_the_head():
    learner = keras_meta.models.conv4(3, input_shape=(16, 16, 1), filters=4)
    model = keras_meta.ANIL(learner, inner_lr=0.5, inner_steps=2)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    support_x = RNG.random((6, 16, 16, 1)).astype("float32")
    support_y = np.repeat(np.arange(3), 2)
    initial = [v.numpy().copy() for v in learner.trainable_variables]
    adapted = model.adapt(support_x, support_y)
    head = {id(v) for v in learner.layers[-1].trainable_variables}
    assert len(adapted) == len(initial)
    for v, start, new in zip(learner.trainable_variables, initial, adapted):
        np.testing.assert_array_equal(v.numpy(), start)  # learner untouched
        if id(v) in head:
            assert np.abs(new.numpy() - start).max() > 1e-4
        else:
            np.testing.assert_array_equal(new.numpy(), start)


def test_maml_adapt_is_plain_gradient_descent(float64):
    """`adapt` with k steps equals k numpy gradient steps (linear MSE)."""
    model = keras_meta.MAML(linear_learner(3), inner_lr=0.1)
    model.compile(loss="mse")
    xs = RNG.normal(size=(8, 3))
    ys = RNG.normal(size=(8, 1))
    w = model.learner.trainable_variables[0].numpy()
    expected = w.copy()
    for _ in range(3):
        expected = expected - 0.1 * (2 / 8) * xs.T @ (xs @ expected - ys)
    (adapted,) = model.adapt(xs, ys, steps=3)
    np.testing.assert_allclose(adapted.numpy(), expected, rtol=1e-10)
    assert isinstance(adapted, tf.Tensor)


def test_recompute_leaves_the_meta_gradient_unchanged(float64):
    """Rematerialised inner steps: the same second-order update (1e-5)."""
    episode = classification_tasks(tasks=3, ways=3, shots=2, queries=2, dim=4)
    x = {
        "support_x": episode[0]["support_x"].reshape(3, 6, 2, 2, 1),
        "support_y": episode[0]["support_y"],
        "query_x": episode[0]["query_x"].reshape(3, 6, 2, 2, 1),
    }
    updates = []
    for recompute in (False, True):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((2, 2, 1))
        hidden = keras.layers.Conv2D(3, 2, padding="same")(inputs)
        hidden = keras.layers.BatchNormalization()(hidden)
        hidden = keras.layers.Activation("tanh")(hidden)
        hidden = keras.layers.Flatten()(hidden)
        learner = keras.Model(inputs, keras.layers.Dense(3)(hidden))
        model = keras_meta.MAML(
            learner, inner_lr=0.5, inner_steps=3, recompute=recompute
        )
        before, after = meta_step(model, (x, episode[1]))
        updates.append([b - a for b, a in zip(before, after)])
    for plain, recomputed in zip(*updates):
        assert np.abs(plain).max() > 1e-6
        np.testing.assert_allclose(recomputed, plain, rtol=1e-5, atol=1e-10)
