"""Shared inner-loop machinery: fast weights, task losses and gradient steps.

Every meta-learner in keras-meta adapts a *learner* (a plain Keras model) to a
task by running it statelessly with a list of "fast weights" in place of its
trainable variables (`Layer.stateless_call`), so that any learner built from
standard Keras layers works, and so that gradients can flow from the adapted
weights back to the initialisation (second-order MAML) or be cut (first order).

The functions here are small, composable and free of algorithm-specific logic:

- `resolve_task_loss` turns what `compile(loss=...)` received into a scalar task
  loss `loss(y_true, y_pred) -> []`.
- `gradient_descent` runs k plain gradient steps on a loss of a weight list.
- `adam_descent` runs k steps of Adam with beta1 = 0 (the Reptile paper).
- `LearnerSplit` views a learner as body + head (its last layers) for ANIL and
  the pre-training baseline.
"""

import keras
import tensorflow as tf


def resolve_task_loss(loss):
    """Returns `fn(y_true, y_pred) -> scalar` for a loss given to `compile`.

    Accepts a `keras.losses.Loss` instance, a loss name (`"mse"`,
    `"sparse_categorical_crossentropy"`, ...) or a function returning
    per-example values. The result is the mean over all examples of one task.
    """
    if loss is None:
        raise ValueError(
            "The meta-learner has no loss: call `model.compile(loss=...)` "
            "first, for example with "
            "`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` "
            "for classification or `'mse'` for regression."
        )
    if isinstance(loss, (list, tuple, dict)):
        raise TypeError(
            "A meta-learner takes a single task loss, got a "
            f"{type(loss).__name__} of losses: {loss!r}. Pass one loss."
        )
    loss_obj = keras.losses.get(loss)
    if isinstance(loss_obj, keras.losses.Loss):
        # Loss.__call__ would divide by the number of tf.distribute replicas
        # (Keras's convention for summed replica gradients); a task loss must
        # not depend on where it runs, so take the mean of the per-example
        # values ourselves.
        def task_loss(y_true, y_pred):
            y_pred = keras.ops.convert_to_tensor(y_pred, dtype=loss_obj.dtype)
            y_true = keras.ops.convert_to_tensor(y_true, dtype=loss_obj.dtype)
            return keras.ops.mean(loss_obj.call(y_true, y_pred))

    else:

        def task_loss(y_true, y_pred):
            return keras.ops.mean(loss_obj(y_true, y_pred))

    return task_loss


def zeros_for_none(grads, weights):
    """Gradients with zeros where a weight did not affect the loss."""
    return [
        keras.ops.zeros_like(w) if g is None else g
        for g, w in zip(grads, weights)
    ]


def gradients(loss_fn, weights, state):
    """`(dL/dweights, new state)` of `loss_fn(weights, state) -> (L, state)`."""
    with tf.GradientTape() as tape:
        tape.watch(weights)
        loss, state = loss_fn(weights, state)
    return zeros_for_none(tape.gradient(loss, weights), weights), state


def take(values, indices):
    """`values` at `indices`: a sub-model's slice of the learner's lists."""
    return [values[i] for i in indices]


def put(values, indices, parts):
    """A copy of `values` with `parts` written at `indices`."""
    values = list(values)
    for i, part in zip(indices, parts):
        values[i] = part
    return values


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
        loss_fn: `fn(weights, state) -> (scalar loss, new_state)`. `state` is
            threaded from step to step (for example the learner's batch-norm
            moving statistics and dropout seeds) and never differentiated.
        weights: list of tensors, the starting point.
        state: list of tensors handed to the first call of `loss_fn`.
        steps: Python int, the number of steps (0 returns the inputs).
        learning_rate: float or scalar tensor.
        differentiable: if True, the steps are recorded on any enclosing
            `tf.GradientTape`, so that gradients with respect to the starting
            point include the Jacobian of the steps (second order). If False,
            each gradient is treated as a constant (first order): an enclosing
            tape then sees `w_k = w_0 - constant`.
        recompute: with `differentiable`, inside a `tf.function`: keep only
            each step's weights for the enclosing tape and recompute the
            step's activations when it differentiates (`rematerialised_step`),
            so that memory does not grow with the activations of every step.

    Returns:
        `(adapted weights, state)`.
    """
    if recompute and differentiable and not tf.executing_eagerly():

        def step(carry):
            weights, state = rematerialised_step(loss_fn, *carry, learning_rate)
            return weights, list(state)

        unroll = False
    else:

        def step(carry):
            grads, state = gradients(loss_fn, *carry)
            if not differentiable:
                grads = [tf.stop_gradient(g) for g in grads]
            return descend(carry[0], grads, learning_rate), list(state)

        # Differentiating plain second-order steps through a tf.while_loop
        # nested in the meta-batch loop trips a TensorFlow runtime bug
        # (Grappler's AddN rewrite: "AlreadyExistsError: Resource
        # __per_step_0/.../tmp_var", tensorflow#25540), so they stay unrolled.
        unroll = differentiable
    return repeat_steps(
        step, (list(weights), list(state)), steps, unroll=unroll
    )


def descend(weights, grads, learning_rate):
    """One plain gradient step `w - lr * g` over a weight list."""
    return [w - learning_rate * g for w, g in zip(weights, grads)]


def repeat_steps(step, carry, steps, unroll=False):
    """`step(carry) -> carry` applied `steps` times; `carry` is a tuple of
    tensors and lists of tensors, such as `(weights, state)`.

    Inside a `tf.function`, more than one step runs as a `tf.while_loop`, so
    the graph (and the memory TensorFlow spends on building and running it:
    about 25 MB per step of conv4 when unrolled, more than the activations
    of a 20-image support set) does not grow with `steps`; gradients flow
    through the loop as through unrolled steps. Eagerly, or with `unroll`,
    a Python loop.
    """
    carry = tuple(carry)
    if unroll or steps <= 1 or tf.executing_eagerly():
        for _ in range(steps):
            carry = tuple(step(carry))
        return carry
    _, *carry = tf.while_loop(
        lambda i, *_: i < steps,
        lambda i, *carry: (i + 1, *step(carry)),
        (tf.constant(0), *carry),
        maximum_iterations=steps,
        parallel_iterations=1,
    )
    return tuple(carry)


def rematerialised_step(loss_fn, weights, state, learning_rate):
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
    def step(*inputs):
        inputs = list(inputs)
        loss, new_state = loss_fn(inputs, state)
        grads = zeros_for_none(tf.gradients(loss, inputs), inputs)
        holder["state"] = [tf.stop_gradient(s) for s in new_state]

        def grad_fn(*upstream):
            # Tie the recomputation to the incoming gradients: otherwise
            # Grappler's common-subexpression elimination merges it with the
            # forward pass and keeps every activation alive after all.
            with tf.control_dependencies(upstream):
                again_inputs = [tf.identity(w) for w in inputs]
            with tf.GradientTape() as outer:
                outer.watch(again_inputs)
                again_grads, _ = gradients(loss_fn, again_inputs, state)
                outputs = descend(again_inputs, again_grads, learning_rate)
            return outer.gradient(
                outputs, again_inputs, output_gradients=list(upstream)
            )

        return descend(inputs, grads, learning_rate), grad_fn

    new_weights = step(*weights)
    return list(new_weights), holder["state"]


# Adam steps (Reptile's inner loop) run unrolled up to this many steps, in a
# `tf.while_loop` beyond. On a 2-core CPU with two tasks in flight, Reptile
# on 5-way max-pool Omniglot took 3.9-4.8 s per meta-iteration with its five
# steps unrolled against 4.3-6.1 s (mostly 5.6-6.1) looped, for 25 MiB more
# (benchmarks/README.md). The bound covers the paper's training k (5 and 8)
# while evaluation's 50 steps keep the loop's small graph.
MAX_UNROLLED_ADAM_STEPS = 10


def adam_descent(
    loss_fn,
    weights,
    state,
    steps,
    learning_rate,
    beta2=0.999,
    epsilon=1e-8,
):
    """Runs `steps` steps of Adam with beta1 = 0, from a fresh Adam state.

    This is the inner optimizer of the Reptile paper (Nichol et al. 2018):
    with beta1 = 0 the first moment is the current gradient, so each step is
    `w <- w - lr * g / (sqrt(v_hat) + eps)`, `v_hat` being the bias-corrected
    running mean of squared gradients. Arguments and result are those of
    `gradient_descent`; the steps are never differentiable. Up to
    `MAX_UNROLLED_ADAM_STEPS` steps are unrolled (faster), more are looped.
    """
    weights = list(weights)
    dtype = weights[0].dtype if weights else "float32"

    def step(carry):
        weights, second_moments, count, state = carry
        grads, state = gradients(loss_fn, weights, state)
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
        return new_weights, new_moments, count, list(state)

    carry = (
        weights,
        [keras.ops.zeros_like(w) for w in weights],
        tf.zeros([], dtype),
        list(state),
    )
    weights, _, _, state = repeat_steps(
        step, carry, steps, unroll=steps <= MAX_UNROLLED_ADAM_STEPS
    )
    return weights, state


def variable_indices(subset, variables):
    """Positions of each variable of `subset` in `variables` (by identity)."""
    position = {id(v): i for i, v in enumerate(variables)}
    try:
        return [position[id(v)] for v in subset]
    except KeyError as e:
        raise ValueError(
            "A sub-model's variable is not a variable of the learner; the "
            "learner's last layers must be its own layers."
        ) from e


class LearnerSplit:
    """A learner viewed as `body` (all but its last layers) and `head`.

    `body` and `head` are Keras models that share the learner's layers and
    variables: `head(body(x))` computes `learner(x)`. The index lists say
    where each sub-model's variables sit in the learner's variable lists, so
    that fast weights for the whole learner can be sliced for either part.

    This is a plain Python object on purpose: Keras does not track it, so the
    shared layers are saved once, as part of the learner.
    """

    def __init__(self, learner, head_layers):
        if not isinstance(head_layers, int) or head_layers < 1:
            raise ValueError(
                f"head_layers must be a positive int, got {head_layers!r}."
            )
        layers = [
            layer
            for layer in learner.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        if head_layers >= len(layers):
            raise ValueError(
                f"head_layers={head_layers} leaves no body: the learner has "
                f"{len(layers)} layers. Use a smaller head_layers."
            )
        try:
            boundary = layers[-head_layers - 1].output
            self.body = keras.Model(learner.inputs, boundary)
            self.head = keras.Model(boundary, learner.outputs)
        except Exception as e:  # Keras raises several types here.
            raise ValueError(
                "Cannot split the learner into body and head at its last "
                f"{head_layers} layer(s): the head must be a chain of the "
                "learner's last layers, fed only by the layer before them "
                f"(Sequential or functional). Keras said: {e}"
            ) from e
        self.body_trainable = variable_indices(
            self.body.trainable_variables, learner.trainable_variables
        )
        self.head_trainable = variable_indices(
            self.head.trainable_variables, learner.trainable_variables
        )
        self.body_non_trainable = variable_indices(
            self.body.non_trainable_variables, learner.non_trainable_variables
        )
        self.head_non_trainable = variable_indices(
            self.head.non_trainable_variables, learner.non_trainable_variables
        )
        if not self.head_trainable:
            raise ValueError(
                f"The learner's last {head_layers} layer(s) have no trainable "
                "variables, so there is nothing to adapt: increase head_layers."
            )


class BatchNormStatistics:
    """Runs a model with batch-norm statistics taken from another batch.

    Keras's `BatchNormalization` normalises with the batch's own statistics
    in training mode and with its moving statistics in inference mode. To
    classify a query set with the statistics of the support set alone (the
    non-transductive protocol), this runs the support set in training mode
    from zeroed moving statistics: one momentum update then leaves exactly
    `(1 - momentum) * batch statistic` in each moving variable, layer by
    layer, which it rescales and hands to an inference-mode call.
    """

    def __init__(self, model):
        variables = model.non_trainable_variables
        self.layers = []
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization):
                mean, variance = variable_indices(
                    [layer.moving_mean, layer.moving_variance], variables
                )
                self.layers.append((mean, variance, layer.momentum))

    def __bool__(self):
        return bool(self.layers)

    def of(self, model, weights, state, x):
        """The state whose moving statistics are the batch statistics of
        `x` at every batch-norm layer of `model` run with `weights`."""
        probe = list(state)
        for mean, variance, _ in self.layers:
            probe[mean] = keras.ops.zeros_like(state[mean])
            probe[variance] = keras.ops.zeros_like(state[variance])
        _, updated = model.stateless_call(weights, probe, x, training=True)
        statistics = list(state)
        for mean, variance, momentum in self.layers:
            statistics[mean] = updated[mean] / (1.0 - momentum)
            statistics[variance] = updated[variance] / (1.0 - momentum)
        return [tf.stop_gradient(s) for s in statistics]

    def call(self, model, weights, state, x, reference_x):
        """`model(x)` normalised with the statistics of `reference_x`, in
        inference mode (so Dropout is off)."""
        if self.layers:
            state = self.of(model, weights, state, reference_x)
        y_pred, _ = model.stateless_call(weights, state, x, training=False)
        return y_pred
