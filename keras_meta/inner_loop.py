"""Inner-loop steps on lists of fast weights.

Every meta-learner adapts a *learner* (a plain Keras model) by running it
statelessly with a list of "fast weights" in place of its trainable
variables (`Layer.stateless_call`), so that any learner of standard Keras
layers works, and so that gradients can flow from the adapted weights back
to the initialisation (second order) or be cut (first order). The functions
here know nothing of algorithms; a loss is `fn(weights, state) -> (scalar,
new state)`:

- `gradients`: the loss's gradient and new state;
- `gradient_descent`: k plain steps `w - lr * g` (lr a scalar, or one per
  weight as in Meta-SGD), unrolled, looped or rematerialised;
- `adam_descent`: k steps of Adam with beta1 = 0 (the Reptile paper);
- `descend`, `repeat_steps`, `rematerialised_step`: their pieces.
"""

import keras
import tensorflow as tf

# Adam steps (Reptile's inner loop) run unrolled up to this many steps, in a
# `tf.while_loop` beyond: unrolled, the papers' few training steps run
# faster on a CPU (benchmarks/README.md, "Levers measured"), while long
# evaluations (50 steps) keep the loop's small graph.
MAX_UNROLLED_ADAM_STEPS = 10


def zeros_for_none(grads, weights):
    """Gradients with zeros where a weight did not affect the loss."""
    return [
        keras.ops.zeros_like(w) if g is None else g
        for g, w in zip(grads, weights)
    ]


def gradients(loss_fn, weights, state, step=0):
    """`(dL/dweights, new state)` of `loss_fn(weights, state, step)`."""
    with tf.GradientTape() as tape:
        tape.watch(weights)
        loss, state = loss_fn(weights, state, step)
    return zeros_for_none(tape.gradient(loss, weights), weights), state


def rate_at(learning_rate, step):
    """The step size of inner step `step`: `learning_rate` itself, or
    `learning_rate(step)` if it is callable (per-step rates, MAML++)."""
    return learning_rate(step) if callable(learning_rate) else learning_rate


def gradient_descent(
    loss_fn,
    weights,
    state,
    steps,
    learning_rate,
    differentiable,
    recompute=False,
):
    """Runs `steps` plain gradient steps `w <- w - lr * dL/dw`.

    Args:
        loss_fn: `fn(weights, state, step) -> (scalar loss, new_state)`;
            `step` is the inner step's index (a Python int, or a scalar
            tensor inside a loop). `state` is threaded from step to step
            (batch-norm moving statistics, dropout seeds) and never
            differentiated.
        weights: list of tensors, the starting point.
        state: list of tensors handed to the first call of `loss_fn`.
        steps: Python int, the number of steps (0 returns the inputs).
        learning_rate: a scalar; a list aligned with `weights` (a scalar or
            a tensor of the weight's shape each, as Meta-SGD learns); or
            `fn(step)` returning either.
        differentiable: if True, the steps are recorded on any enclosing
            `tf.GradientTape`, so that gradients with respect to the starting
            point include the Jacobian of the steps (second order). If False,
            each gradient is treated as a constant (first order): an enclosing
            tape then sees `w_k = w_0 - constant`.
        recompute: with `differentiable`, inside a `tf.function`: keep only
            each step's weights for the enclosing tape and recompute the
            step's activations when it differentiates (`rematerialised_step`),
            so that memory does not grow with the activations of every step.
            The learning rate must then be a constant, not learned.

    Returns:
        `(adapted weights, state)`.
    """
    step, unroll = _descent_step(
        loss_fn, learning_rate, differentiable, recompute
    )
    return repeat_steps(step, (list(weights), state), steps, unroll=unroll)


def _descent_step(loss_fn, learning_rate, differentiable, recompute):
    """`gradient_descent`'s step `fn((weights, state), i)`, and whether
    its loop must be unrolled."""
    if recompute and differentiable and not tf.executing_eagerly():
        if callable(learning_rate) or isinstance(learning_rate, (list, tuple)):
            raise ValueError(
                "recompute=True needs one constant learning rate: the "
                "rematerialised step does not differentiate learned rates."
            )

        def recomputed(carry, i):
            return rematerialised_step(loss_fn, *carry, learning_rate, i)

        return recomputed, False

    def step(carry, i):
        grads, state = gradients(loss_fn, *carry, i)
        if not differentiable:
            grads = [tf.stop_gradient(g) for g in grads]
        rate = rate_at(learning_rate, i)
        return descend(carry[0], grads, rate), state

    # Differentiating plain second-order steps through a tf.while_loop
    # nested in the meta-batch loop trips a TensorFlow runtime bug
    # (Grappler's AddN rewrite: "AlreadyExistsError: Resource
    # __per_step_0/.../tmp_var", tensorflow#25540), so they stay unrolled.
    return step, differentiable or callable(learning_rate)


def descend(weights, grads, learning_rate):
    """One plain gradient step `w - lr * g` over a weight list; `lr` is a
    scalar or a list aligned with `weights` (each a scalar or a tensor of
    its weight's shape)."""
    if isinstance(learning_rate, (list, tuple)):
        return [w - lr * g for w, g, lr in zip(weights, grads, learning_rate)]
    return [w - learning_rate * g for w, g in zip(weights, grads)]


def repeat_steps(step, carry, steps, unroll=False):
    """`step(carry, i) -> carry` for `i = 0 .. steps - 1`; `carry` is a
    tuple of tensors and lists of tensors, such as `(weights, state)`.

    Inside a `tf.function`, more than one step runs as a `tf.while_loop`
    (`i` a scalar tensor), so the graph (and the memory TensorFlow spends
    on building and running it: about 25 MB per step of conv4 when
    unrolled, more than the activations of a 20-image support set) does
    not grow with `steps`; gradients flow through the loop as through
    unrolled steps. Eagerly, or with `unroll`, a Python loop (`i` an int).
    """
    carry = tuple(carry)
    if unroll or steps <= 1 or tf.executing_eagerly():
        for i in range(steps):
            carry = tuple(step(carry, i))
        return carry
    _, *carry = tf.while_loop(
        lambda i, *_: i < steps,
        lambda i, *carry: (i + 1, *step(carry, i)),
        (tf.constant(0), *carry),
        maximum_iterations=steps,
        parallel_iterations=1,
    )
    return tuple(carry)


def rematerialised_step(loss_fn, weights, state, learning_rate, step=0):
    """One differentiable gradient step whose activations are recomputed.

    The forward pass runs outside any tape (`tf.custom_gradient`), taking the
    inner gradient symbolically with `tf.gradients`, so an enclosing tape
    keeps only the step's inputs and outputs. When the tape differentiates,
    the step is run again under nested tapes and its vector-Jacobian product
    taken: the same second-order meta-gradient, for one extra forward and
    backward pass per step. Graph mode only (inside `tf.function`).
    """
    holder = {}

    @tf.custom_gradient
    @tf.autograph.experimental.do_not_convert
    def remat_step(*inputs):
        inputs = list(inputs)
        loss, new_state = loss_fn(inputs, state, step)
        grads = zeros_for_none(tf.gradients(loss, inputs), inputs)
        holder["state"] = tf.nest.map_structure(tf.stop_gradient, new_state)

        def grad_fn(*upstream):
            # Tie the recomputation to the incoming gradients: otherwise
            # Grappler's common-subexpression elimination merges it with the
            # forward pass and keeps every activation alive after all.
            with tf.control_dependencies(upstream):
                again_inputs = [tf.identity(w) for w in inputs]
            with tf.GradientTape() as outer:
                outer.watch(again_inputs)
                again_grads, _ = gradients(loss_fn, again_inputs, state, step)
                outputs = descend(again_inputs, again_grads, learning_rate)
            return outer.gradient(
                outputs, again_inputs, output_gradients=list(upstream)
            )

        return descend(inputs, grads, learning_rate), grad_fn

    new_weights = remat_step(*weights)
    return list(new_weights), holder["state"]


def adam_descent(
    loss_fn,
    weights,
    state,
    steps,
    learning_rate,
    beta2=0.999,
    epsilon=1e-8,
    moments=None,
    count=None,
):
    """Runs `steps` steps of Adam with beta1 = 0.

    This is the inner optimizer of the Reptile paper (Nichol et al. 2018):
    with beta1 = 0 the first moment is the current gradient, so each step is
    `w <- w - lr * g / (sqrt(v_hat) + eps)`, `v_hat` being the bias-corrected
    running mean of squared gradients. Arguments are those of
    `gradient_descent`; the steps are never differentiable. Up to
    `MAX_UNROLLED_ADAM_STEPS` steps are unrolled (faster), more are looped.

    Adam continues from `moments` (second moments aligned with `weights`)
    and `count` (the steps they have seen, a scalar), or starts fresh if
    they are None. Returns `(weights, state, moments, count)`.
    """
    weights = list(weights)
    dtype = weights[0].dtype if weights else "float32"

    def step(carry, i):
        weights, second_moments, count, state = carry
        grads, state = gradients(loss_fn, weights, state, i)
        count = count + 1.0
        correction = 1.0 - beta2**count
        new_weights, new_moments = [], []
        for w, g, v in zip(weights, grads, second_moments):
            g = tf.stop_gradient(g)
            v = beta2 * v + (1.0 - beta2) * keras.ops.square(g)
            v_hat = v / correction
            new_weights.append(
                w - learning_rate * g / (keras.ops.sqrt(v_hat) + epsilon)
            )
            new_moments.append(v)
        return new_weights, new_moments, count, state

    fresh = moments is None
    carry = (
        weights,
        [keras.ops.zeros_like(w) for w in weights] if fresh else list(moments),
        tf.zeros([], dtype) if fresh else tf.cast(count, dtype),
        state,
    )
    weights, moments, count, state = repeat_steps(
        step, carry, steps, unroll=steps <= MAX_UNROLLED_ADAM_STEPS
    )
    return weights, state, moments, count


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
