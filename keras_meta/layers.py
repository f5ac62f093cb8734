"""Layers of the learners: batch norm with exact second derivatives, on
TensorFlow's fused kernel, and able to normalise parts of a batch apart."""

import contextlib
import threading

import keras
import tensorflow as tf

from keras_meta import compat

# cuDNN's fused batch norm refuses a smaller epsilon; below it, the layer
# runs Keras's own pass, so that it behaves alike on every device.
_FUSED_MIN_EPSILON = 1.001e-5
_segments = threading.local()


@contextlib.contextmanager
def batch_segments(sizes):
    """Within it, `BatchNormalization` in training mode normalises each
    consecutive segment of its batch (`sizes` rows each, summing to the
    batch) with that segment's own statistics, and updates its moving
    statistics once per segment, in order: as if each segment ran through
    the layer alone, one after the other. So one call of a model on
    `concat([support, query])` equals a call on the support set followed by
    one on the query set, with fewer, larger ops (ANIL runs its body so).
    Layers that mix examples otherwise are not affected. Applies to the
    calls traced inside it (in this thread); `None` turns it off."""
    previous = getattr(_segments, "sizes", None)
    _segments.sizes = None if sizes is None else list(sizes)
    try:
        yield
    finally:
        _segments.sizes = previous


@keras.saving.register_keras_serializable(package="keras_meta")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with exact second derivatives,
    trained with one fused op.

    Second-order meta-learning (MAML, Meta-SGD, MAML++) differentiates the
    inner loop's gradient. Keras's layer computes the batch variance with
    `tf.nn.moments`, which stops the gradient of the mean inside it: the
    gradient is exact, but its derivative is not (the variance's Hessian
    loses its `-2/n^2` coupling between examples), so a second-order
    meta-gradient through it is wrong: for two-step MAML on a small
    Dense-batch norm-Dense learner, by 36% of the first kernel's largest
    entry against float64 finite differences (README, "Batch norm and
    second derivatives").

    In training mode this layer runs TensorFlow's `FusedBatchNormV3`
    (oneDNN on CPUs, cuDNN on GPUs, XLA under `jit_compile`), whose
    registered second derivative recomputes the statistics from the input
    and is exact. It is also less CPU work per meta-iteration than Keras's
    unfused ops (benchmarks/README.md, "Batch norm").
    Where the kernel does not apply (float64, an axis other than the last,
    `epsilon` below cuDNN's 1.001e-5, `renorm`) Keras's own training pass
    runs, with only its moments replaced by exact ones. Outputs and the
    moving-statistics update are Keras's (momentum towards the batch mean
    and the population variance).

    Same arguments, variables and config as Keras's layer, which it leaves
    to in inference mode, for a frozen layer, and with a mask or
    `synchronized` (whose second derivatives are then Keras's). `isinstance
    (layer, keras.layers.BatchNormalization)` holds, so the engine's
    batch-norm handling (non-transductive statistics, MAML++'s per-step
    copies) is the same.
    """

    def _fused_applies(self, inputs, training, mask):
        return (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis % len(inputs.shape) == len(inputs.shape) - 1
            and self.epsilon >= _FUSED_MIN_EPSILON
            and keras.backend.standardize_dtype(inputs.dtype)
            in ("float16", "bfloat16", "float32")
        )

    def call(self, inputs, training=None, mask=None):
        sizes = getattr(_segments, "sizes", None)
        if sizes and training and self.trainable and mask is None:
            with batch_segments(None):
                return tf.concat(
                    [
                        self.call(part, training=training)
                        for part in tf.split(inputs, sizes)
                    ],
                    axis=0,
                )
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        # As Keras's layer: statistics in float32 whatever the policy.
        x = tf.cast(inputs, "float32")
        y, mean, variance = self._fused(x)
        momentum = self.momentum
        self.moving_mean.assign(
            self.moving_mean * momentum
            + tf.stop_gradient(mean) * (1 - momentum)
        )
        self.moving_variance.assign(
            self.moving_variance * momentum
            + tf.stop_gradient(variance) * (1 - momentum)
        )
        return tf.cast(y, self.compute_dtype)

    def _moments(self, inputs, mask):
        """Keras's batch moments for its own training pass (where the
        kernel does not apply), with the variance taken about the mean
        without stopping its gradient, so second derivatives are exact."""
        if mask is not None or self.synchronized:
            return super()._moments(inputs, mask)
        axes = compat.reduction_axes(self)
        mean = keras.ops.mean(inputs, axes, keepdims=True)
        variance = keras.ops.mean(keras.ops.square(inputs - mean), axes)
        return keras.ops.squeeze(mean, axes), variance

    def _fused(self, x):
        """`(y, batch mean, batch population variance)` by the kernel."""
        channels = tf.shape(x)[-1]
        # The kernel wants [N, H, W, C]; the statistics are over every
        # axis but the last, so every rank folds into [1, rows, 1, C]. (On
        # 4-D activations as they are, Grappler's layout optimizer, with
        # oneDNN on, made Meta-SGD's second-order graph cyclic: "nodes in
        # a cycle". Folded, it leaves the op alone, at the same speed.)
        rows = tf.reshape(x, [1, -1, 1, channels])
        ones = tf.ones([channels], x.dtype)
        y, mean, corrected_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=rows,
            scale=tf.cast(self.gamma, x.dtype) if self.scale else ones,
            offset=tf.cast(self.beta, x.dtype) if self.center else 0 * ones,
            mean=tf.zeros([0], x.dtype),
            variance=tf.zeros([0], x.dtype),
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel reports the Bessel-corrected variance (it normalises
        # with the population one); Keras's moving variance follows the
        # population variance. With one row both are 0.
        count = tf.cast(tf.size(x) // channels, x.dtype)
        variance = (
            corrected_variance
            * tf.maximum(count - 1.0, 0.0)
            / tf.maximum(count, 1.0)
        )
        return tf.reshape(y, tf.shape(x)), mean, variance
