"""Run by test_distribute.py in fresh processes (tf.distribute needs its
devices and cluster set before TensorFlow starts).

    python distributed_worker.py MODE ALGORITHMS OUT_DIR
MODE: single | mirrored (2 logical CPUs) | multi_worker (reads TF_CONFIG).
For each of the comma-separated ALGORITHMS, trains 3 meta-iterations of 4
tasks and saves the learner's weights as OUT_DIR/<algorithm>.npz (one
process for all of them: TensorFlow's start-up is most of the cost).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

mode, algorithms, out = sys.argv[1:4]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif mode == "multi_worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.get_strategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_meta  # noqa: E402

rng = np.random.default_rng(0)
images = rng.random((60, 16, 16, 1)).astype("float32")
labels = np.repeat(np.arange(12), 5)
episodes = keras_meta.data.episodes_from_arrays(
    images, labels, ways=3, shots=1, queries=2, meta_batch=4, seed=0
)


def train(algorithm):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        learner = keras_meta.models.conv4(3, (16, 16, 1), filters=4)
        model = {
            "maml": lambda: keras_meta.MAML(learner, 0.4),
            "fomaml": lambda: keras_meta.MAML(learner, 0.4, first_order=True),
            "anil": lambda: keras_meta.ANIL(learner, 0.4, inner_steps=2),
            "reptile": lambda: keras_meta.Reptile(
                learner, 0.1, 3, inner_optimizer="sgd"
            ),
        }[algorithm]()
        model.compile(
            # SGD: Adam would turn float rounding in near-zero gradients
            # into whole steps, hiding the comparison.
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    model.fit(episodes, steps_per_epoch=3, verbose=0)
    path = os.path.join(out, f"{algorithm}.npz")
    np.savez(path, *[w.numpy() for w in model.learner.weights])


os.makedirs(out, exist_ok=True)
for name in algorithms.split(","):
    train(name)
print("replicas", strategy.num_replicas_in_sync)
