"""iMAML: implicit meta-gradients (Rajeswaran, Finn, Kakade and Levine,
NeurIPS 2019)."""

import keras
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.checks import check_count
from keras_meta.engine import MetaLearner, TaskUpdate
from keras_meta.reptile import INNER_OPTIMIZERS


def _nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    return float(value)


def conjugate_gradient(matvec, b, steps):
    """Solves `A x = b` for symmetric positive definite `A`, given as
    `matvec(v) -> A v`, by `steps` iterations of conjugate gradients from
    x = 0 (exact after as many steps as unknowns, in exact arithmetic).
    `b` and `x` are lists of tensors (a weight list's shape), so `A` is
    never formed: iMAML's `A v` is a Hessian-vector product.

    iMAML's `A = I + H / lambda` need not be positive definite (a
    non-convex support loss, no damping): where a search direction has
    curvature `p'Ap <= 0`, the iterations stop and keep the `x` they
    reached (truncated CG, as in Steihaug's method), and if that happens
    at the first step, `x = b` (`A` taken as the identity: the first-order
    meta-gradient), instead of dividing by a curvature near zero."""

    def dot(u, v):
        return tf.add_n([tf.reduce_sum(a * c) for a, c in zip(u, v)])

    x = [keras.ops.zeros_like(t) for t in b]
    r, p = list(b), list(b)
    rs = dot(r, r)
    tiny = tf.constant(1e-30, rs.dtype)
    stopped = tf.constant(False)
    for step in range(steps):
        ap = matvec(p)
        curvature = dot(p, ap)
        negative = curvature <= 0.0
        if step == 0:
            # Along b itself the curvature is not positive: no CG step
            # can be trusted; fall back to the identity.
            x = [tf.where(negative, bi, xi) for bi, xi in zip(b, x)]
        stopped = tf.logical_or(stopped, negative)
        alpha = tf.where(
            stopped, tf.zeros_like(rs), rs / tf.maximum(curvature, tiny)
        )
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        r = [ri - alpha * api for ri, api in zip(r, ap)]
        rs_new = dot(r, r)
        beta = rs_new / tf.maximum(rs, tiny)
        p = [ri + beta * pi for ri, pi in zip(r, p)]
        rs = rs_new
    return x


@keras.saving.register_keras_serializable(package="keras_meta")
class IMAML(MetaLearner):
    """Implicit MAML: a meta-gradient whose memory does not grow with the
    inner steps.

    Per task the inner loop minimises the support loss plus
    `proximal_strength / 2 * |phi - theta|^2` from the initialisation
    `theta`, with no tape through its steps (SGD, or Adam). At the adapted
    `phi`, the implicit function theorem gives the meta-gradient
    `(I + H / proximal_strength)^-1 g`, with `g` the query-loss gradient and
    `H` the support loss's Hessian there; conjugate gradients solve for it
    with Hessian-vector products (a double backward pass), never forming
    `H`. Memory is one step's, whatever `inner_steps`.

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: the inner step size (the paper's Omniglot: 0.1).
        inner_steps: inner steps during meta-training (the paper: 16 for
            5-way, 25 for 20-way Omniglot).
        eval_inner_steps: inner steps at evaluation (default `inner_steps`).
        proximal_strength: lambda, the pull towards the initialisation
            (the paper: 2.0).
        cg_steps: conjugate-gradient iterations (the paper: 5).
        cg_damping: added to the identity, solving
            `((1 + cg_damping) I + H / (proximal_strength +
            hessian_damping)) v = g`: the authors' code's `regu_coef`
            (their Omniglot command: 1.0). 0: the paper's equation.
        hessian_damping: added to `proximal_strength` in that system: the
            authors' code's `lam_damping` (its default 10.0). 0: the
            paper's equation.
        inner_optimizer: `"sgd"` or `"adam"` (beta1 = 0, a fresh state per
            task).
    """

    second_order = False  # no tape through the steps: the gradient is implicit

    def __init__(
        self,
        learner,
        inner_lr=0.1,
        inner_steps=16,
        eval_inner_steps: int | None = None,
        proximal_strength=2.0,
        cg_steps=5,
        cg_damping=0.0,
        hessian_damping=0.0,
        inner_optimizer="sgd",
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        if isinstance(proximal_strength, bool) or not (
            isinstance(proximal_strength, (int, float))
            and proximal_strength > 0
        ):
            raise ValueError(
                "proximal_strength must be a positive number (the paper "
                f"uses 2.0), got {proximal_strength!r}: at 0 the inner "
                "problem has no pull towards the initialisation and the "
                "implicit meta-gradient is undefined."
            )
        self.proximal_strength = float(proximal_strength)
        self.cg_steps = check_count(cg_steps, "cg_steps", minimum=1)
        self.cg_damping = _nonnegative(cg_damping, "cg_damping")
        self.hessian_damping = _nonnegative(hessian_damping, "hessian_damping")
        if inner_optimizer not in INNER_OPTIMIZERS:
            raise ValueError(
                f"inner_optimizer must be one of {INNER_OPTIMIZERS}, got "
                f"{inner_optimizer!r}."
            )
        self.inner_optimizer = inner_optimizer

    def proximal_loss(self, task, anchor):
        """The inner objective: support loss plus the proximal term to
        `anchor` (the initialisation, a constant)."""
        support = self.support_loss(task)
        strength = self.proximal_strength

        def loss(weights, state, step):
            value, state = support(weights, state, step)
            distance = tf.add_n(
                [
                    tf.reduce_sum(tf.square(w - tf.cast(a, w.dtype)))
                    for w, a in zip(weights, anchor)
                ]
            )
            return value + tf.cast(
                0.5 * strength, value.dtype
            ) * distance, state

        return loss

    def adapt_task(self, weights, state, task, steps, differentiable):
        anchor = [tf.stop_gradient(w) for w in weights]
        loss = self.proximal_loss(task, anchor)
        if self.inner_optimizer == "adam":
            adapted, state, _, _ = inner_loop.adam_descent(
                loss, anchor, state, steps, self.inner_lr
            )
            return adapted, state
        return inner_loop.gradient_descent(
            loss, anchor, state, steps, self.inner_lr, differentiable=False
        )

    def hessian_vector_product(self, weights, state, task, vector):
        """`H v`: the support loss's Hessian at `weights` times `vector`,
        by differentiating `grad . v` (two backward passes)."""
        support = self.support_loss(task)
        with tf.GradientTape() as outer:
            outer.watch(weights)
            with tf.GradientTape() as inner:
                inner.watch(weights)
                loss, _ = support(weights, state, 0)
            grads = inner_loop.zeros_for_none(
                inner.gradient(loss, weights), weights
            )
            projection = tf.add_n(
                [
                    tf.reduce_sum(g * tf.stop_gradient(v))
                    for g, v in zip(grads, vector)
                ]
            )
        return inner_loop.zeros_for_none(
            outer.gradient(projection, weights), weights
        )

    def task_update(self, weights, state, task):
        """The implicit meta-gradient `(I + H / lambda)^-1 g` at the
        adapted weights, by conjugate gradients."""
        adapted, state = self.adapt_task(
            weights, state, task, self.inner_steps, False
        )
        adapted = [tf.stop_gradient(w) for w in adapted]
        with tf.GradientTape() as tape:
            tape.watch(adapted)
            y_pred, _, losses = self.forward(adapted, state, task.query_x)
            loss = self.query_loss(task, y_pred, losses)
            scaled = self.scale_loss(loss)
        g = inner_loop.zeros_for_none(tape.gradient(scaled, adapted), adapted)
        identity = 1.0 + self.cg_damping
        scale = 1.0 / (self.proximal_strength + self.hessian_damping)

        def matvec(v):
            hv = self.hessian_vector_product(adapted, state, task, v)
            return [identity * vi + scale * hvi for vi, hvi in zip(v, hv)]

        meta_gradient = conjugate_gradient(matvec, g, self.cg_steps)
        return TaskUpdate(meta_gradient, loss, y_pred, state)

    def get_config(self):
        return {
            **super().get_config(),
            "proximal_strength": self.proximal_strength,
            "cg_steps": self.cg_steps,
            "cg_damping": self.cg_damping,
            "hessian_damping": self.hessian_damping,
            "inner_optimizer": self.inner_optimizer,
        }
