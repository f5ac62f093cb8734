"""Where a run executes: threads, the `tf.distribute` strategy, which worker
writes, and where the data is by default."""

import os

from keras_meta.cli.errors import UsageError

# Algorithms whose ops are large batches (Pretrain's training): they want
# every core per op, TensorFlow's default.
WHOLE_CORES_PER_OP = ("pretrain",)


def set_task_parallelism(value, algorithm):
    """Applies --task_parallelism (before TensorFlow starts, as it must).

    `auto`: two tasks in flight with TensorFlow's process-wide threads set
    to one per op on a CPU-only host (`threads_per_op="global"`), the
    fastest in benchmarks/README.md; a script runs one kind of model, so
    nothing else in the process pays for it. The pre-training baseline,
    whose large batches want every core per op, keeps one task in flight
    and TensorFlow's threading.
    """
    import keras_meta

    if value == "auto":
        tasks = 1 if algorithm in WHOLE_CORES_PER_OP else "auto"
    else:
        try:
            tasks = int(value)
        except ValueError:
            raise UsageError(
                f"--task_parallelism={value!r} is neither a positive int nor "
                "auto."
            ) from None
        if tasks < 1:
            raise UsageError(f"--task_parallelism={value} must be at least 1.")
    return keras_meta.config.set_task_parallelism(tasks, "global")


def make_strategy(name):
    """The `tf.distribute` strategy named by --strategy (created before any
    other TensorFlow work, as multi-worker training requires)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError(
                "--strategy=multi_worker reads the cluster from $TF_CONFIG; "
                "set it on every worker (see the README)."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run folder (worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )
