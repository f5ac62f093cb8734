"""iMAML against closed forms, numpy's solver and finite differences of an
unrolled numpy meta-loss."""

import keras
import numpy as np
import numpy_reference as reference
import pytest
import tensorflow as tf
from test_meta_gradients import (
    classification_tasks,
    linear_learner,
    meta_step,
    numpy_cross_entropy,
    numpy_forward,
    numpy_support_gradient,
    two_layer_learner,
)

import keras_meta
from keras_meta.imaml import conjugate_gradient

RNG = np.random.default_rng(5)


def test_conjugate_gradient_solves_a_positive_definite_system(float64):
    n = 7
    m = RNG.normal(size=(n, n))
    a = m @ m.T + n * np.eye(n)
    b = [RNG.normal(size=(3,)), RNG.normal(size=(4,))]  # a weight list

    def matvec(v):
        flat = a @ np.concatenate([t.numpy() for t in v])
        return [tf.constant(flat[:3]), tf.constant(flat[3:])]

    x = conjugate_gradient(matvec, [tf.constant(t) for t in b], steps=n)
    expected = np.linalg.solve(a, np.concatenate(b))
    np.testing.assert_allclose(
        np.concatenate([t.numpy() for t in x]), expected, rtol=1e-8
    )


def test_conjugate_gradient_stops_at_negative_curvature(float64):
    """An indefinite A (a non-convex support loss without damping): CG
    keeps the iterate it reached before the first direction of
    non-positive curvature (truncated CG), or returns b when b itself has
    it, instead of dividing by a curvature near zero."""
    a = np.diag([2.0, -1.0])
    b = np.array([1.0, 0.1])

    def matvec(v):
        return [tf.constant(a @ v[0].numpy())]

    # Textbook CG in numpy: one step along b, then the second direction.
    alpha = (b @ b) / (b @ a @ b)
    x1, r1 = alpha * b, b - alpha * (a @ b)
    p1 = r1 + (r1 @ r1) / (b @ b) * b
    assert b @ a @ b > 0 and p1 @ a @ p1 < 0  # the case under test
    x = conjugate_gradient(matvec, [tf.constant(b)], steps=5)
    np.testing.assert_allclose(x[0].numpy(), x1, rtol=1e-12)

    # Non-positive curvature along b itself: the identity's answer, b.
    x = conjugate_gradient(
        lambda v: [tf.constant(-v[0].numpy())], [tf.constant(b)], steps=3
    )
    np.testing.assert_allclose(x[0].numpy(), b, rtol=1e-12)


def test_linear_regression_matches_the_closed_forms(float64):
    """MSE on a linear model: the proximal inner problem has the solution
    phi* = (H + lam I)^-1 (2 X'y / n + lam theta), H = 2 X'X / n, and the
    implicit meta-gradient is (I + H / lam)^-1 grad L_q(phi*)."""
    lam, dim = 2.0, 4
    x, query_y = reference.linear_regression_tasks(RNG, tasks=3, dim=dim)
    model = keras_meta.IMAML(
        linear_learner(dim),
        inner_lr=0.05,
        inner_steps=800,
        proximal_strength=lam,
        cg_steps=dim,
    )
    model.compile(loss="mse")
    theta = model.learner.trainable_variables[0].numpy().copy()
    grads = []
    for xs, ys, xq, yq in zip(
        x["support_x"], x["support_y"], x["query_x"], query_y
    ):
        n = len(xs)
        hessian = 2 * xs.T @ xs / n
        phi = np.linalg.solve(
            hessian + lam * np.eye(dim), 2 * xs.T @ ys / n + lam * theta
        )
        adapted = model.adapt(xs, ys)[0]
        np.testing.assert_allclose(adapted, phi, rtol=1e-4, atol=1e-6)
        query_grad = 2 * xq.T @ (xq @ phi - yq) / len(xq)
        grads.append(np.linalg.solve(np.eye(dim) + hessian / lam, query_grad))
    before, after = meta_step(model, (x, query_y))
    np.testing.assert_allclose(
        before[0] - after[0], np.mean(grads, axis=0), rtol=1e-4, atol=1e-7
    )


def numpy_unrolled_proximal_loss(params, x, query_y, alpha, steps, lam):
    """The meta-loss of `steps` gradient steps on the proximal support
    loss of the two-layer net, from `params` and anchored at them."""
    losses = []
    for t in range(len(query_y)):
        fast = [p.copy() for p in params]
        for _ in range(steps):
            grads = numpy_support_gradient(
                fast, x["support_x"][t], x["support_y"][t]
            )
            fast = [
                f - alpha * (g + lam * (f - p))
                for f, g, p in zip(fast, grads, params)
            ]
        logits = numpy_forward(fast, x["query_x"][t])[1]
        losses.append(numpy_cross_entropy(logits, query_y[t]))
    return np.mean(losses)


def test_implicit_meta_gradient_equals_the_unrolled_one_at_convergence(
    float64,
):
    """On a small network whose inner problem is solved exactly, the
    implicit meta-gradient is the derivative of the unrolled meta-loss
    (finite differences of numpy's)."""
    alpha, steps, lam = 0.2, 150, 2.0
    learner = two_layer_learner(4, 5, 3)
    model = keras_meta.IMAML(
        learner,
        inner_lr=alpha,
        inner_steps=steps,
        proximal_strength=lam,
        cg_steps=60,
    )
    x, query_y = classification_tasks()
    params = [v.numpy().copy() for v in learner.trainable_variables]
    expected = reference.finite_differences(
        lambda p: numpy_unrolled_proximal_loss(
            p, x, query_y, alpha, steps, lam
        ),
        params,
    )
    before, after = meta_step(model, (x, query_y))
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=1e-5, atol=1e-8)


def test_bad_settings_are_refused():
    learner = linear_learner(2)
    with pytest.raises(
        ValueError, match="proximal_strength must be a positive"
    ):
        keras_meta.IMAML(learner, proximal_strength=0.0)
    with pytest.raises(ValueError, match="cg_steps must be >= 1"):
        keras_meta.IMAML(learner, cg_steps=0)
    with pytest.raises(ValueError, match="cg_damping must be >= 0"):
        keras_meta.IMAML(learner, cg_damping=-1.0)


def test_a_loss_without_curvature_gives_the_query_gradient(float64):
    """A linear learner under a mean absolute error has no second
    derivative (H = 0): the implicit meta-gradient is then the query
    gradient at the adapted weights, what first-order MAML would take."""
    learner = linear_learner(3)
    model = keras_meta.IMAML(learner, inner_steps=3, proximal_strength=1.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mae")
    x, query_y = reference.linear_regression_tasks(RNG, tasks=2, dim=3)
    theta = learner.trainable_variables[0].numpy().copy()
    expected = []
    for t in range(2):
        phi = model.adapt(x["support_x"][t], x["support_y"][t])[0]
        residual = x["query_x"][t] @ phi - query_y[t]
        expected.append(x["query_x"][t].T @ np.sign(residual) / len(residual))
    model.fit(x, query_y, batch_size=2, verbose=0)
    np.testing.assert_allclose(
        theta - learner.trainable_variables[0].numpy(),
        np.mean(expected, axis=0),
        rtol=1e-6,
    )
