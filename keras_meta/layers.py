"""Layers of the learners: batch norm with exact second derivatives, on
TensorFlow's fused kernel."""

import keras
import tensorflow as tf

# cuDNN's fused batch norm refuses a smaller epsilon; below it, the layer
# uses plain ops, so that it behaves alike on every device.
_FUSED_MIN_EPSILON = 1.001e-5


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
    and is exact. It is also faster: on the meta-learners' conv4, about 20%
    less CPU work per meta-iteration (benchmarks/README.md, "Batch norm").
    Where the kernel does not apply (float64, an axis other than the last,
    `epsilon` below cuDNN's 1.001e-5) the same exact statistics come from
    plain ops. Outputs and the moving-statistics update are Keras's
    (momentum towards the batch mean and the population variance).

    Same arguments, variables and config as Keras's layer, which it leaves
    to in inference mode, for a frozen layer, and with a mask, `renorm` or
    `synchronized` (whose second derivatives are then Keras's). `isinstance
    (layer, keras.layers.BatchNormalization)` holds, so the engine's
    batch-norm handling (non-transductive statistics, MAML++'s per-step
    copies) is the same.
    """

    def _fused_applies(self, inputs):
        return (
            self.axis % len(inputs.shape) == len(inputs.shape) - 1
            and self.epsilon >= _FUSED_MIN_EPSILON
            and keras.backend.standardize_dtype(inputs.dtype)
            in ("float16", "bfloat16", "float32")
        )

    def call(self, inputs, training=None, mask=None):
        if not (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
        ):
            return super().call(inputs, training=training, mask=mask)
        # As Keras's layer: statistics in float32 (or float64) whatever the
        # policy.
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        if self._fused_applies(x):
            y, mean, variance = self._fused(x)
        else:
            y, mean, variance = self._composite(x)
        momentum = self.momentum
        self.moving_mean.assign(
            tf.cast(self.moving_mean, x.dtype) * momentum
            + tf.stop_gradient(mean) * (1.0 - momentum)
        )
        self.moving_variance.assign(
            tf.cast(self.moving_variance, x.dtype) * momentum
            + tf.stop_gradient(variance) * (1.0 - momentum)
        )
        return tf.cast(y, self.compute_dtype)

    def _scale_and_offset(self, x, channels):
        ones = tf.ones([channels], x.dtype)
        scale = tf.cast(self.gamma, x.dtype) if self.scale else ones
        offset = tf.cast(self.beta, x.dtype) if self.center else 0.0 * ones
        return scale, offset

    def _fused(self, x):
        """`(y, batch mean, batch population variance)` by the kernel."""
        channels = tf.shape(x)[-1]
        # The kernel wants [N, H, W, C]; the statistics are over every
        # axis but the last, so every rank folds into [1, rows, 1, C]. (On
        # 4-D activations as they are, Grappler's layout optimizer, with
        # oneDNN on, made Meta-SGD's second-order graph cyclic: "nodes in
        # a cycle". Folded, it leaves the op alone, at the same speed.)
        rows = tf.reshape(x, [1, -1, 1, channels])
        scale, offset = self._scale_and_offset(x, channels)
        y, mean, corrected_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=rows,
            scale=scale,
            offset=offset,
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

    def _composite(self, x):
        """As `_fused`, from plain ops; any axis and dtype. Unlike
        `tf.nn.moments` (Keras's), the variance is taken about the mean
        without stopping its gradient, so second derivatives are exact."""
        axis = self.axis % len(x.shape)
        axes = [i for i in range(len(x.shape)) if i != axis]
        mean = tf.reduce_mean(x, axes, keepdims=True)
        variance = tf.reduce_mean(tf.square(x - mean), axes, keepdims=True)
        shape = [1] * len(x.shape)
        shape[axis] = -1
        scale, offset = self._scale_and_offset(x, tf.shape(x)[axis])
        y = (x - mean) * tf.math.rsqrt(variance + self.epsilon) * tf.reshape(
            scale, shape
        ) + tf.reshape(offset, shape)
        return y, tf.reshape(mean, [-1]), tf.reshape(variance, [-1])
