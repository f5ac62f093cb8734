"""Inner-loop steps on lists of fast weights.

Every meta-learner adapts a *learner* (a plain Keras model) by running it
statelessly with a list of "fast weights" in place of its trainable
variables (`Layer.stateless_call`), so that any learner of standard Keras
layers works, and so that gradients can flow from the adapted weights back
to the initialisation (second order) or be cut (first order). The functions
here know nothing of algorithms; a loss is `fn(weights, state, step) ->
(scalar, new state)`:

- `gradients`: the loss's gradient and new state;
- `gradient_descent`: k plain steps `w - lr * g`, the one inner loop of
  MAML, ANIL, Meta-SGD, MAML++, Reptile and the rest, with per-step hooks
  (rates, derivative order, a loss after each step), unrolled, looped or
  rematerialised;
- `adam_descent`: k steps of Adam with beta1 = 0 (the Reptile paper);
- `descend`, `ordered`, `repeat_steps`, `rematerialised_step`: its pieces
  (`keras_meta.imaml` has conjugate gradients for implicit meta-gradients).
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


def gradients(loss_fn, weights, state, step=0, adapted=None):
    """`(dL/dweights, new state)` of `loss_fn(weights, state, step)`; with
    `adapted` (indices), the gradients of those weights only."""
    targets = weights if adapted is None else [weights[i] for i in adapted]
    with tf.GradientTape() as tape:
        tape.watch(targets)
        loss, state = loss_fn(weights, state, step)
    return zeros_for_none(tape.gradient(loss, targets), targets), state


def rate_at(learning_rate, step):
    """The step size of inner step `step`: `learning_rate` itself, or
    `learning_rate(step)` if it is callable (per-step rates, MAML++)."""
    return learning_rate(step) if callable(learning_rate) else learning_rate


def ordered(grads, differentiable):
    """`grads` as the enclosing tape should see them: as they are (second
    order, `differentiable` True), as constants (first order, False), or
    either, chosen at run time by a boolean tensor (MAML++'s first-order
    iterations)."""
    if differentiable is True:
        return list(grads)
    if differentiable is False:
        return [tf.stop_gradient(g) for g in grads]
    first = 1.0 - tf.cast(differentiable, grads[0].dtype)
    return [g - first * (g - tf.stop_gradient(g)) for g in grads]


def gradient_descent(
    loss_fn,
    weights,
    state,
    steps,
    learning_rate,
    differentiable,
    recompute=False,
    adapted=None,
    step_loss=None,
):
    """Runs `steps` plain gradient steps `w <- w - lr * dL/dw`: the one
    inner loop of every gradient-based algorithm. Its per-step hooks are
    the loss (which sees the step's index: per-step batch norm), the
    learning rate, the derivative order and the loss after each step.

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
            `fn(step)` returning either (MAML++'s per-step rates).
        differentiable: if True, the steps are recorded on any enclosing
            `tf.GradientTape`, so that gradients with respect to the starting
            point include the Jacobian of the steps (second order). If False,
            each gradient is treated as a constant (first order): an enclosing
            tape then sees `w_k = w_0 - constant`. A boolean tensor chooses
            at run time; `fn(step)` returning either chooses per step.
        recompute: with `differentiable`, inside a `tf.function`: keep only
            each step's weights for the enclosing tape and recompute the
            step's activations when it differentiates (`rematerialised_step`),
            so that memory does not grow with the activations of every step.
            Learned rates and variables read by `loss_fn` (per-step
            batch-norm parameters) get their gradients as without it.
        adapted: indices of the weights the steps change (default: all);
            the others reach `loss_fn` unchanged (an ANIL-like head-only
            loop over the whole learner), and their gradients flow through
            the steps all the same.
        step_loss: `fn(weights, state, step) -> (scalar, new_state)`,
            evaluated on the weights after every step (MAML++'s multi-step
            loss: the weighted query loss after step `step`).

    Returns:
        `(adapted weights, state)`, and with `step_loss` the sum of its
        values over the steps (in the weights' dtype) as a third element.
    """
    step, unroll = _descent_step(
        loss_fn, learning_rate, differentiable, recompute, adapted
    )
    carry = (list(weights), state)
    if step_loss is not None:
        plain_step = step

        def step(carry, i):
            weights, state = plain_step(carry[:2], i)
            loss, state = step_loss(weights, state, i)
            return weights, state, carry[2] + tf.cast(loss, carry[2].dtype)

        carry += (tf.zeros([], weights[0].dtype),)
    return repeat_steps(step, carry, steps, unroll=unroll)


def _descent_step(loss_fn, learning_rate, differentiable, recompute, adapted):
    """`gradient_descent`'s step `fn((weights, state), i)`, and whether
    its loop must be unrolled."""
    per_step = callable(learning_rate) or callable(differentiable)
    if recompute and differentiable is not False and not tf.executing_eagerly():

        def recomputed(carry, i):
            return rematerialised_step(
                loss_fn,
                *carry,
                rate_at(learning_rate, i),
                i,
                rate_at(differentiable, i),
                adapted,
            )

        # Per-step hooks may read variables inside the recomputed step
        # (MAML++'s per-step batch norm), whose gradients TensorFlow cannot
        # take through a tf.while_loop ("in list of internal_captures but
        # not in internal_capture_to_output"): those steps are unrolled.
        return recomputed, per_step

    def step(carry, i):
        weights, state = carry
        grads, state = gradients(loss_fn, weights, state, i, adapted)
        grads = ordered(grads, rate_at(differentiable, i))
        rate = rate_at(learning_rate, i)
        return descend(weights, grads, rate, adapted), state

    # Differentiating plain second-order steps through a tf.while_loop
    # nested in the meta-batch loop trips a TensorFlow runtime bug
    # (Grappler's AddN rewrite: "AlreadyExistsError: Resource
    # __per_step_0/.../tmp_var", tensorflow#25540), so they stay unrolled.
    return step, differentiable is not False or per_step


def descend(weights, grads, learning_rate, adapted=None):
    """One plain gradient step `w - lr * g` over a weight list; `lr` is a
    scalar or a list aligned with `weights` (each a scalar or a tensor of
    its weight's shape). With `adapted` (indices), `grads` are those
    weights' and only they move."""
    indices = range(len(weights)) if adapted is None else adapted
    rates = learning_rate
    if not isinstance(rates, (list, tuple)):
        rates = [rates] * len(weights)
    new = list(weights)
    for i, g in zip(indices, grads):
        new[i] = weights[i] - rates[i] * g
    return new


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


def rematerialised_step(
    loss_fn,
    weights,
    state,
    learning_rate,
    step=0,
    differentiable=True,
    adapted=None,
):
    """One differentiable gradient step whose activations are recomputed.

    The forward pass runs outside any tape (`tf.custom_gradient`), taking the
    inner gradient symbolically with `tf.gradients`, so an enclosing tape
    keeps only the step's inputs and outputs. When the tape differentiates,
    the step is run again under nested tapes and its vector-Jacobian product
    taken: the same meta-gradient, for one extra forward and backward pass
    per step. The learning rates are inputs of the step, and variables
    `loss_fn` reads get their gradients too, so learned rates and per-step
    batch-norm parameters are differentiated as without recomputation.
    `differentiable` may be a boolean tensor (first order when False).
    Graph mode only (inside `tf.function`).
    """
    holder = {}
    weights = list(weights)
    listed = isinstance(learning_rate, (list, tuple))
    rates = list(learning_rate) if listed else [learning_rate]
    rates = [tf.convert_to_tensor(r, weights[0].dtype) for r in rates]
    count = len(weights)

    def one_step(inputs, rates, grads):
        return descend(inputs, grads, rates if listed else rates[0], adapted)

    @tf.custom_gradient
    @tf.autograph.experimental.do_not_convert
    def remat_step(*inputs):
        inputs, step_rates = list(inputs[:count]), list(inputs[count:])
        targets = inputs if adapted is None else [inputs[i] for i in adapted]
        loss, new_state = loss_fn(inputs, state, step)
        grads = zeros_for_none(tf.gradients(loss, targets), targets)
        holder["state"] = tf.nest.map_structure(tf.stop_gradient, new_state)

        def grad_fn(*upstream, variables=None):
            # Tie the recomputation to the incoming gradients: otherwise
            # Grappler's common-subexpression elimination merges it with the
            # forward pass and keeps every activation alive after all.
            with tf.control_dependencies(upstream):
                again = [tf.identity(t) for t in inputs + step_rates]
            variables = list(variables or [])
            with tf.GradientTape() as outer:
                outer.watch(again)
                again_weights, again_rates = again[:count], again[count:]
                again_grads, _ = gradients(
                    loss_fn, again_weights, state, step, adapted
                )
                again_grads = ordered(again_grads, differentiable)
                outputs = one_step(again_weights, again_rates, again_grads)
            grads = outer.gradient(
                outputs,
                again + variables,
                output_gradients=list(upstream),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            return grads[: len(again)], grads[len(again) :]

        return one_step(inputs, step_rates, grads), grad_fn

    new_weights = remat_step(*weights, *rates)
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
