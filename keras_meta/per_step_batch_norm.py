"""Per-step batch norm (MAML++'s BNWB and BNRS): each inner step runs the
learner's batch-norm layers with its own scale, offset and running
statistics."""

import keras
import numpy as np
import tensorflow as tf

from keras_meta import compat
from keras_meta.learner_parts import (
    add_weight_holding,
    put,
    take,
    variable_indices,
)


class PerStepBatchNorm:
    """A mixin for a `MetaLearner` whose inner steps each have their own
    batch-norm parameters and statistics.

    `init_per_step_batch_norm` (from `__init__`, after the engine's) makes,
    for every batch-norm layer `l` of the learner, `[inner_steps, ...]`
    copies: `bn_gammas[l]`, `bn_betas[l]` (meta-learned; list them in
    `own_meta_variables`) and `bn_means[l]`, `bn_variances[l]` (running
    statistics; name them in `state_variables` beside the learner's own).
    `_forward_at` then runs the learner as at inner step `step`; steps past
    `inner_steps - 1` reuse the last step's copies.
    """

    def init_per_step_batch_norm(self, learner, enabled):
        """Per-step scale, offset and running statistics of every
        batch-norm layer, from the learner's own."""
        layers = [
            layer
            for layer in compat.flatten_layers(learner)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        self._bn_layers = layers if enabled else []
        self.bn_gammas, self.bn_betas, self.bn_means, self.bn_variances = (
            [],
            [],
            [],
            [],
        )
        params, stats = [], []
        for layer in self._bn_layers:
            if not (layer.scale and layer.center):
                raise ValueError(
                    "per_step_batch_norm needs batch-norm layers with scale "
                    f"and center; {layer.name} lacks one. Pass "
                    "per_step_batch_norm=False."
                )

            self.bn_gammas.append(self._per_step(layer.gamma, True))
            self.bn_betas.append(self._per_step(layer.beta, True))
            self.bn_means.append(self._per_step(layer.moving_mean, False))
            self.bn_variances.append(
                self._per_step(layer.moving_variance, False)
            )
            params += [layer.gamma, layer.beta]
            stats += [layer.moving_mean, layer.moving_variance]
        self._bn_params = variable_indices(params, learner.trainable_variables)
        self._bn_stats = variable_indices(
            stats, learner.non_trainable_variables
        )
        # The inner loop adapts every trainable variable but the batch-norm
        # parameters it swaps in per step.
        self._inner_indices = [
            i
            for i in range(len(learner.trainable_variables))
            if i not in self._bn_params
        ]

    def _per_step(self, variable, trainable):
        """A `[inner_steps, ...]` copy of `variable`, one row per step."""
        shape = (self.inner_steps, *variable.shape)
        return add_weight_holding(
            self,
            np.broadcast_to(variable.numpy(), shape),
            f"{variable.path.replace('/', '_')}_per_step",
            variable.dtype,
            trainable=trainable,
        )

    def _step_index(self, step):
        return tf.minimum(step, self.inner_steps - 1)

    def _at_step(self, weights, state, step):
        """The learner's weights and state for inner step `step`: its
        batch-norm parameters and statistics swapped for that step's."""
        if not self._bn_layers:
            return weights, state["learner"]
        i = self._step_index(step)
        params = []
        for gamma, beta in zip(self.bn_gammas, self.bn_betas):
            params += [tf.gather(gamma, i), tf.gather(beta, i)]
        stats = []
        for mean, variance in zip(state["bn_means"], state["bn_variances"]):
            stats += [tf.gather(mean, i), tf.gather(variance, i)]
        return (
            put(weights, self._bn_params, params),
            put(state["learner"], self._bn_stats, stats),
        )

    def _store_step(self, state, learner_state, step):
        """`state` with the learner's part from `learner_state` and step
        `step`'s running statistics updated from it."""
        state = {**state, "learner": list(learner_state)}
        if not self._bn_layers:
            return state
        i = self._step_index(step)
        updated = take(learner_state, self._bn_stats)
        for k, name in enumerate(("bn_means", "bn_variances")):
            state[name] = [
                tf.tensor_scatter_nd_update(
                    table, [[i]], [updated[2 * layer + k]]
                )
                for layer, table in enumerate(state[name])
            ]
        return state

    def _forward_at(self, weights, state, x, step, transductive=True):
        """`(predictions, state, losses)` of the learner at inner step
        `step`; non-transductive: that step's running statistics."""
        step_weights, step_state = self._at_step(weights, state, step)
        y_pred, learner_state, losses = self.learner.stateless_call(
            step_weights,
            step_state,
            x,
            training=transductive,
            return_losses=True,
        )
        learner_state = [tf.stop_gradient(s) for s in learner_state]
        if not transductive:
            return y_pred, state, losses
        return y_pred, self._store_step(state, learner_state, step), losses

    def adapted_learner(self, support_x, support_y, steps=None):
        """As `MetaLearner.adapted_learner`, but in inference mode the copy
        normalises with the last step's running statistics (BNRS), as the
        non-transductive protocol of MAML++ does."""
        clone = super().adapted_learner(support_x, support_y, steps)
        steps = self.eval_inner_steps if steps is None else steps
        last = min(max(steps - 1, 0), self.inner_steps - 1)
        stats = []
        for mean, variance in zip(self.bn_means, self.bn_variances):
            stats += [mean[last], variance[last]]
        for index, value in zip(self._bn_stats, stats):
            clone.non_trainable_variables[index].assign(value)
        return clone
