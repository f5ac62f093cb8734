"""MAML++ (Antoniou, Edwards and Storkey, "How to train your MAML", ICLR
2019): MAML with its training made stable."""

import keras
import numpy as np
import tensorflow as tf

from keras_meta import compat, inner_loop
from keras_meta.checks import check_bool, check_count
from keras_meta.engine import MetaLearner, TaskUpdate
from keras_meta.learner_parts import LearnerSplit, add_weight_holding
from keras_meta.per_step_batch_norm import PerStepBatchNorm

MIN_NON_FINAL_WEIGHT = 0.03  # times 1 / steps, as the authors' code


def multi_step_loss_weights(steps, progress):
    """The multi-step loss's weight of the query loss after each of `steps`
    inner steps, at `progress` (iterations / annealing iterations, >= 0):
    uniform at 0, then the non-final weights fall linearly to
    `0.03 / steps` and the last one rises, until progress 1, from which the
    last step's loss alone counts (the authors' schedule)."""
    progress = tf.cast(progress, tf.float32)
    uniform = 1.0 / steps
    floor = MIN_NON_FINAL_WEIGHT / steps
    early = tf.maximum(uniform - progress * uniform, floor)
    last = tf.minimum(
        uniform + progress * (steps - 1) * uniform, 1.0 - (steps - 1) * floor
    )
    annealing = tf.concat([tf.fill([steps - 1], early), [last]], axis=0)
    final_only = tf.one_hot(steps - 1, steps)
    return tf.where(progress < 1.0, annealing, final_only)


@keras.saving.register_keras_serializable(package="keras_meta")
class MAMLPlusPlus(PerStepBatchNorm, MetaLearner):
    """MAML++: MAML with the fixes of Antoniou et al., each a switch.

    - `learned_rates` (LSLR): a learned inner step size per inner step and
      per trainable variable, `inner_lrs` of shape `[inner_steps,
      len(learner.trainable_variables)]`, initialised to `inner_lr`.
    - `multi_step_loss` (MSL): the meta-loss is the weighted sum of the
      query losses after every inner step, the weights annealed from
      uniform to the last step alone over `multi_step_loss_iterations`.
    - `first_order_iterations` (DA): first-order meta-gradients for that
      many iterations, second-order after (0: second order throughout).
    - `per_step_batch_norm` (BNWB + BNRS): each inner step i runs the
      learner's batch-norm layers with their own scale and offset
      (`bn_gammas[l][i]`, `bn_betas[l][i]`, meta-learned, not adapted in the
      inner loop) and their own running statistics, which the
      non-transductive protocol uses to normalise step i.
    - Cosine annealing of the meta learning rate is the optimizer's
      (`keras.optimizers.schedules.CosineDecay`; the scripts set it).

    The steps run in the shared inner loop (`inner_loop.gradient_descent`)
    through its per-step hooks, so the fixes combine with `recompute` and
    with an ANIL-like head-only inner loop (`head_layers`).

    Iteration-dependent behaviour (MSL, DA) reads `schedule_iteration()`:
    the optimizer's iteration count, or the variable `schedule_clock` if a
    callback has set it further (it starts at -1):
    `keras_meta.callbacks.TimeBudget(schedule_iterations=N)` sets it to the
    fraction of the time budget spent times N, so that in a timed run the
    schedules take the same share of the run as over N iterations (a run
    ends at its budget or its iterations, whichever comes first). Both
    survive `save`, `load_model` and `--resume`.

    Args:
        learner: a built `keras.Model`; see `MetaLearner`.
        inner_lr: the initial inner step size (the authors: 0.1 Omniglot,
            0.01 Mini-ImageNet).
        inner_steps, eval_inner_steps: as for `MAML` (the authors: 5). At
            evaluation, steps past `inner_steps` reuse the last step's
            rates and batch-norm parameters.
        learned_rates: learn a step size per inner step and weight (LSLR).
        multi_step_loss: the meta-loss weighs the query loss after every
            inner step, annealed to the last (MSL).
        per_step_batch_norm: each inner step has its own batch-norm scale,
            offset and running statistics (BNWB + BNRS).
        multi_step_loss_iterations: iterations of MSL annealing (the
            authors: 10 epochs of 500 for Omniglot, 15 for Mini-ImageNet).
        first_order_iterations: DA's first-order iterations (the paper's
            text: its first 50 epochs, 25,000 iterations; its released
            configurations: 0).
        recompute: rematerialise the inner steps' activations during the
            meta-gradient, as `MAML(recompute=True)`; learned rates and
            per-step batch-norm parameters keep their exact gradients.
        head_layers: if set, the inner loop adapts only the learner's last
            `head_layers` layers (ANIL's inner loop, with MAML++'s fixes);
            None (default) adapts every layer, as in the paper.
    """

    def __init__(
        self,
        learner,
        inner_lr=0.1,
        inner_steps=5,
        eval_inner_steps: int | None = None,
        learned_rates=True,
        multi_step_loss=True,
        multi_step_loss_iterations=5000,
        first_order_iterations=25000,
        per_step_batch_norm=True,
        recompute=False,
        head_layers: int | None = None,
        **kwargs,
    ):
        super().__init__(
            learner,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            **kwargs,
        )
        check_count(inner_steps, "inner_steps", minimum=1)
        self.learned_rates = check_bool(learned_rates, "learned_rates")
        self.multi_step_loss = check_bool(multi_step_loss, "multi_step_loss")
        self.per_step_batch_norm = check_bool(
            per_step_batch_norm, "per_step_batch_norm"
        )
        self.multi_step_loss_iterations = check_count(
            multi_step_loss_iterations, "multi_step_loss_iterations"
        )
        self.first_order_iterations = check_count(
            first_order_iterations, "first_order_iterations"
        )
        self.recompute = check_bool(recompute, "recompute")
        self.head_layers = head_layers
        variables = learner.trainable_variables
        self.inner_lrs = add_weight_holding(
            self,
            np.full((self.inner_steps, len(variables)), self.inner_lr),
            "inner_lrs",
            variables[0].dtype,
            trainable=learned_rates,
        )
        self.init_per_step_batch_norm(learner, per_step_batch_norm)
        if head_layers is not None:
            head = LearnerSplit(learner, head_layers).head_trainable
            self._inner_indices = [i for i in self._inner_indices if i in head]
        # Created last, so that models saved before it existed still load.
        self.schedule_clock = add_weight_holding(
            self, -1.0, "schedule_clock", "float32", trainable=False
        )

    def schedule_iteration(self):
        """The iteration MSL and DA read (a float32 scalar tensor): the
        optimizer's iteration count or `schedule_clock`, the larger."""
        iterations = tf.cast(self.optimizer.iterations, tf.float32)
        return tf.maximum(tf.convert_to_tensor(self.schedule_clock), iterations)

    def load_own_variables(self, store):
        """Loads this model's own variables; a model saved before
        `schedule_clock` existed (one variable fewer) loads with the clock
        unset."""
        own = compat.own_variables(self)
        if len(store.keys()) != len(own) - 1:
            return super().load_own_variables(store)
        for i, variable in enumerate(own[:-1]):
            variable.assign(store[str(i)])
        self.schedule_clock.assign(-1.0)

    @property
    def own_meta_variables(self):
        rates = [self.inner_lrs] if self.learned_rates else []
        return [*rates, *self.bn_gammas, *self.bn_betas]

    @property
    def state_variables(self):
        """The learner's, and each batch-norm layer's per-step running
        statistics (`"bn_means"`, `"bn_variances"`: `[inner_steps, ...]`
        each)."""
        return {
            **super().state_variables,
            "bn_means": list(self.bn_means),
            "bn_variances": list(self.bn_variances),
        }

    def _rates(self, step):
        """Step `step`'s learned rates, aligned with the learner's
        trainable variables."""
        rates = tf.gather(
            tf.convert_to_tensor(self.inner_lrs), self._step_index(step)
        )
        return tf.unstack(rates)

    def _run(self, weights, state, task, steps, differentiable, query_weights):
        """`steps` inner steps of the shared loop; returns `(weights, state,
        query loss)`, the loss weighted over the steps by `query_weights
        [steps]` (or None: no query loss, 0). `differentiable` may be a
        boolean tensor (DA)."""

        def loss_at(x, y_true):
            def loss(weights, state, step):
                y_pred, state, losses = self._forward_at(
                    weights, state, x, step
                )
                if y_true is None:
                    y_loss = self.query_loss(task, y_pred, losses)
                    weight = tf.gather(query_weights, step)
                    return tf.cast(weight, y_loss.dtype) * y_loss, state
                return self.task_loss(y_true, y_pred, None, losses), state

            return loss

        result = inner_loop.gradient_descent(
            loss_at(task.support_x, task.support_y),
            weights,
            state,
            steps,
            self._rates,
            differentiable,
            recompute=self.recompute,
            adapted=self._inner_indices,
            step_loss=None
            if query_weights is None
            else loss_at(task.query_x, None),
        )
        return result if query_weights is not None else (*result, 0.0)

    # -- hooks ---------------------------------------------------------------

    def adapt_task(self, weights, state, task, steps, differentiable):
        weights, state, _ = self._run(
            weights, state, task, steps, differentiable, None
        )
        # The learner's own batch-norm parameters become the last step's,
        # so that `adapt`'s weights run in a plain copy of the learner.
        step_weights, _ = self._at_step(weights, state, max(steps - 1, 0))
        return step_weights, state

    def predict_task(
        self,
        weights,
        state,
        task,
        steps,
        differentiable=False,
        transductive=True,
    ):
        adapted, new_state, _ = self._run(
            weights, state, task, steps, differentiable, None
        )
        last = max(steps - 1, 0)
        if transductive:
            return self._forward_at(adapted, new_state, task.query_x, last)
        if self._bn_layers:
            # Step `last`'s meta-learned running statistics, not the ones
            # this task's own support set moved.
            y_pred, _, losses = self._forward_at(
                adapted, state, task.query_x, last, transductive=False
            )
            return y_pred, new_state, losses
        return super().predict_task(
            adapted, new_state, task, 0, differentiable, transductive
        )

    def task_update(self, weights, state, task):
        """The gradient of the (multi-step) query loss with respect to
        `meta_variables`: first order until `first_order_iterations`."""
        iteration = self.schedule_iteration()
        steps = self.inner_steps
        if self.multi_step_loss and self.multi_step_loss_iterations:
            query_weights = multi_step_loss_weights(
                steps, iteration / self.multi_step_loss_iterations
            )
        else:
            query_weights = tf.one_hot(steps - 1, steps)
        second_order = iteration >= self.first_order_iterations
        init = [tf.identity(w) for w in weights]
        own = self.own_meta_variables
        with tf.GradientTape() as tape:
            tape.watch(init)
            adapted, state, loss = self._run(
                init, state, task, steps, second_order, query_weights
            )
            scaled = self.scale_loss(loss)
        grads = tape.gradient(scaled, init + own)
        # The last step's predictions, for the metrics.
        y_pred, _, _ = self._forward_at(
            tf.nest.map_structure(tf.stop_gradient, adapted),
            state,
            task.query_x,
            steps - 1,
        )
        return TaskUpdate(
            inner_loop.zeros_for_none(grads, init + own), loss, y_pred, state
        )

    def learned_rate_summary(self):
        """`{"inner_lr/step_<i>/<weight>": rate}`, for logging."""
        rates = self.inner_lrs.numpy()
        return {
            f"inner_lr/step_{i}/{v.path}": float(rates[i, j])
            for i in range(self.inner_steps)
            for j, v in enumerate(self.learner.trainable_variables)
            if j in self._inner_indices
        }

    def get_config(self):
        return {
            **super().get_config(),
            "learned_rates": self.learned_rates,
            "multi_step_loss": self.multi_step_loss,
            "multi_step_loss_iterations": self.multi_step_loss_iterations,
            "first_order_iterations": self.first_order_iterations,
            "per_step_batch_norm": self.per_step_batch_norm,
            "recompute": self.recompute,
            "head_layers": self.head_layers,
        }
