"""One convolution's kernels timed alone: forward, input gradient, filter
gradient, and the filter gradient computed two other ways.

The per-op profile (`op_profile.py`) puts 30% of max-pool MAML's time in
the convolutions' filter gradients. This times conv4's 3x3, 64-filter
convolution on one thread at the shapes of a task's query set, alone and
two at once (as two tasks in flight run), and the filter gradient as a
forward convolution with batch and channels swapped and as patches and one
matrix product (both checked against TensorFlow's kernel):

    python benchmarks/conv_kernels.py
"""

import threading
import time

import numpy as np

import keras_meta  # noqa: F401  (before TensorFlow: oneDNN on a CPU)

SHAPES = ((75, 14), (5, 14), (75, 28))  # (images, side); 64 channels
CHANNELS = 64


def kernels(images, side):
    import tensorflow as tf

    c = CHANNELS

    def filter_gradient(x, dy):
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x,
            filter_sizes=[3, 3, c, c],
            out_backprop=dy,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )

    def input_gradient(w, dy):
        return tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[images, side, side, c],
            filter=w,
            out_backprop=dy,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )

    def swapped(x, dy):
        # dW[i, j, ci, co] = sum over n, h, w of xpad[n, h+i, w+j, ci]
        # dy[n, h, w, co]: a VALID convolution of x with dy as the filter,
        # batch and channels swapped.
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        out = tf.nn.conv2d(
            tf.transpose(padded, [3, 1, 2, 0]),
            tf.transpose(dy, [1, 2, 0, 3]),
            1,
            "VALID",
        )
        return tf.transpose(out, [1, 2, 0, 3])

    def patches(x, dy):
        p = tf.image.extract_patches(
            x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME"
        )
        columns = tf.reshape(p, [-1, 9 * c])
        grad = tf.matmul(columns, tf.reshape(dy, [-1, c]), transpose_a=True)
        return tf.reshape(grad, [3, 3, c, c])

    return {
        "forward": (lambda x, w, dy: tf.nn.conv2d(x, w, 1, "SAME")),
        "input gradient": (lambda x, w, dy: input_gradient(w, dy)),
        "filter gradient": (lambda x, w, dy: filter_gradient(x, dy)),
        "filter gradient, swapped": (lambda x, w, dy: swapped(x, dy)),
        "filter gradient, patches": (lambda x, w, dy: patches(x, dy)),
    }


def milliseconds(fn, args, repeats):
    fn(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*args)
    return (time.perf_counter() - start) / repeats * 1e3


def two_at_once(fn, args, repeats):
    out = []
    threads = [
        threading.Thread(
            target=lambda: out.append(milliseconds(fn, args, repeats))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rng = np.random.default_rng(0)
    print("shape | kernel | alone (ms) | two at once (ms)")
    for images, side in SHAPES:
        x, dy = (
            tf.constant(rng.random((images, side, side, CHANNELS), "float32"))
            for _ in range(2)
        )
        w = tf.constant(rng.random((3, 3, CHANNELS, CHANNELS), "float32"))
        found = {
            name: tf.function(fn) for name, fn in kernels(images, side).items()
        }
        reference = found["filter gradient"](x, w, dy).numpy()
        for name in ("filter gradient, swapped", "filter gradient, patches"):
            np.testing.assert_allclose(
                found[name](x, w, dy).numpy(), reference, rtol=1e-3
            )
        for name, fn in found.items():
            alone = milliseconds(fn, (x, w, dy), 30)
            both = two_at_once(fn, (x, w, dy), 30)
            print(
                f"[{images}, {side}, {side}, {CHANNELS}] | {name} | "
                f"{alone:.2f} | {both[0]:.2f} / {both[1]:.2f}",
                flush=True,
            )
    print("Reproduce with: python benchmarks/conv_kernels.py")


if __name__ == "__main__":
    main()
