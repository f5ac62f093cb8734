"""Process-wide settings, in the manner of `keras.config`.

`set_task_parallelism` decides how the T tasks of a meta-batch share the
machine. The ops of a few-shot task are small (a 5-image support set, a 28x28
convolution), so on a CPU splitting each op over every core costs about as
much in synchronisation as it gains, and two tasks side by side run faster.
That is the default on a CPU-only host: the tasks run as a `tf.data` map on
a thread pool of their own, one thread per op.

TensorFlow's oneDNN kernels (its convolutions and matrix products) take
their threads from TensorFlow's global intra-op pool whatever the `tf.data`
pool's limit says, so with two tasks in flight each convolution was still
split over both cores, and meta-training ran 1.1-1.2x slower than with one
thread per op (`benchmarks/README.md`, "One thread per op by default").
So on a CPU-only host with at least 2 cores, `import keras_meta` sets
TensorFlow's intra-op threads to `cores // 2` when TensorFlow has not
started and nobody has set them, as the training scripts always did. Every
other model in the process then gets that many threads per op too (a
large-batch Keras model is slower; its independent ops still run side by
side). To keep TensorFlow's own threading, set
`KERAS_META_TF_THREADS=keep` in the environment, or call
`set_task_parallelism(1)` (one task at a time, every core per op) before
TensorFlow starts. With a GPU or TPU nothing is set, and under XLA or
`tf.distribute` the tasks run in a `tf.map_fn` loop instead.

    import keras_meta
    keras_meta.config.set_task_parallelism(1)  # one task at a time
"""

import functools
import os
import warnings

import tensorflow as tf

from keras_meta import _onednn

# Tasks of a meta-batch in flight at once; None until set: "auto".
_task_parallelism = None
# Where their ops find threads: "auto" (a pool of their own on a CPU-only
# host), "global" (TensorFlow's process-wide pools, resized) or None
# (TensorFlow's threading as it is).
_threads_per_op = "auto"
# The environment variable that keeps TensorFlow's threading as it is.
KEEP_THREADS_VARIABLE = "KERAS_META_TF_THREADS"
# Whether `import keras_meta` set TensorFlow's intra-op threads (so that
# `set_task_parallelism` may give them back before TensorFlow starts).
_threads_set_at_import = False


def _cores():
    return os.cpu_count() or 1


@functools.cache  # a process's physical devices do not change
def _has_accelerator():
    return bool(
        tf.config.list_physical_devices("GPU")
        or tf.config.list_physical_devices("TPU")
    )


def _auto_tasks():
    return 2 if _cores() >= 2 and not _has_accelerator() else 1


def task_parallelism():
    """The number of tasks of a meta-batch that run at once: by default 2
    on a CPU-only host with at least 2 cores, else 1."""
    if _task_parallelism is None:
        return _auto_tasks()
    return _task_parallelism


def private_pool_threads():
    """Threads per op when the tasks run on a thread pool of their own
    (`cores // tasks`), or None when they run on TensorFlow's global pools:
    one task at a time, a GPU or TPU, or `threads_per_op` other than
    `"auto"`. The engine also keeps them off that pool under XLA and
    `tf.distribute`, where a `tf.data` map cannot run."""
    tasks = task_parallelism()
    if _threads_per_op != "auto" or tasks == 1 or _has_accelerator():
        return None
    return max(1, _cores() // tasks)


def set_task_parallelism(tasks="auto", threads_per_op="auto"):
    """Runs `tasks` tasks of each meta-batch at once, sharing the CPU cores.

    Peak memory grows with `tasks`: each task in flight holds its
    activations until its meta-gradient is taken.

    Args:
        tasks: a positive int, or `"auto"` (the default without a call): 2
            on a CPU-only host with at least 2 cores, else 1. `1` runs one
            task at a time on TensorFlow's threading.
        threads_per_op: where the tasks' ops find threads on a CPU-only
            host.
            - `"auto"`: a thread pool of the tasks' own, `cores // tasks`
              threads per op for Eigen's kernels; this may be called at
              any time. oneDNN's kernels take TensorFlow's global intra-op
              threads, which `import keras_meta` set to `cores // 2`: before
              TensorFlow starts they follow this call (`cores // tasks`,
              every core for one task), after it they stay and a warning
              says so. (Under XLA or `tf.distribute`, and with a GPU or
              TPU, the tasks run on TensorFlow's threading instead.)
            - `"global"`: TensorFlow's process-wide intra-op threads set to
              `cores // tasks`. Call it first thing, before TensorFlow runs
              any op; every other model in the process then gets that many
              threads per op too, which slows a large-batch model.
            - None: TensorFlow's threading as it is; only the number of
              tasks in flight changes.

    Returns:
        The number of tasks in flight now.

    Raises:
        RuntimeError: `"global"` after TensorFlow has started with another
            thread count.
    """
    global _task_parallelism, _threads_per_op
    if tasks == "auto":
        tasks = _auto_tasks()
    if isinstance(tasks, bool) or not isinstance(tasks, int):
        raise TypeError(
            f'tasks must be a positive int or "auto", got {tasks!r}.'
        )
    if tasks < 1:
        raise ValueError(f"tasks must be at least 1, got {tasks}.")
    if threads_per_op not in ("auto", "global", None):
        raise ValueError(
            'threads_per_op must be "auto", "global" or None, got '
            f"{threads_per_op!r}."
        )
    if threads_per_op == "global" and not _has_accelerator():
        _set_global_threads(tasks, _cores())
    elif _threads_set_at_import:
        _fit_threads_set_at_import(tasks, threads_per_op)
    _task_parallelism = tasks
    _threads_per_op = threads_per_op
    return tasks


def _per_op_threads(tasks, cores=None):
    """TensorFlow's intra-op threads for `tasks` tasks in flight: 0
    (TensorFlow's "let it choose", every core per op) for one task, else
    the cores split between the tasks."""
    return 0 if tasks == 1 else max(1, (cores or _cores()) // tasks)


def _set_global_threads(tasks, cores):
    """TensorFlow's intra-op threads for `tasks` tasks in flight on `cores`
    cores, or a `RuntimeError` saying when to call if it has started."""
    threads = _per_op_threads(tasks, cores)
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError as e:
            wanted = (
                f"{threads} thread(s) per op"
                if threads
                else "TensorFlow's default threading"
            )
            raise RuntimeError(
                f"set_task_parallelism({tasks}, threads_per_op='global') "
                f"needs {wanted}, but TensorFlow has already started with "
                "its thread pools fixed. Call it at the start of the "
                "program, before building a model or running any "
                "TensorFlow op, or use threads_per_op='auto' (the tasks' "
                "own thread pool), which needs no restart."
            ) from e


def set_threads_at_import():
    """At `import keras_meta`: one thread per op for the two tasks in
    flight of a CPU-only host (TensorFlow's intra-op threads set to
    `cores // 2`), unless TensorFlow has started, its threads were set, a
    GPU or TPU is present, or `KERAS_META_TF_THREADS=keep`. Returns whether
    it set them."""
    global _threads_set_at_import
    if os.environ.get(KEEP_THREADS_VARIABLE, "").lower() == "keep":
        return False
    if _auto_tasks() < 2:  # one core, or an accelerator
        return False
    if tf.config.threading.get_intra_op_parallelism_threads():
        return False  # the program's own choice
    try:
        tf.config.threading.set_intra_op_parallelism_threads(_cores() // 2)
    except RuntimeError:  # TensorFlow has started: its pools are fixed
        return False
    _threads_set_at_import = True
    return True


def _fit_threads_set_at_import(tasks, threads_per_op):
    """After `set_threads_at_import`, TensorFlow's intra-op threads for a
    new setting: one per op per task for tasks on their own pool, every
    core per op otherwise (one task at a time, or `threads_per_op=None`).
    Once TensorFlow has started they cannot change: a warning says so."""
    threads = _per_op_threads(tasks if threads_per_op == "auto" else 1)
    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        warnings.warn(
            f"set_task_parallelism({tasks}, threads_per_op="
            f"{threads_per_op!r}) would run each op on "
            + (f"{threads} thread(s)" if threads else "every core")
            + ", but TensorFlow has started "
            "with the threads `import keras_meta` set "
            f"({tf.config.threading.get_intra_op_parallelism_threads()} per "
            "op). Call it before building a model or running any "
            f"TensorFlow op, or set {KEEP_THREADS_VARIABLE}=keep in the "
            "environment to keep TensorFlow's own threading.",
            stacklevel=3,
        )


_large_batch_warned = False


def warn_if_threads_set_at_import(model_name):
    """Warns once per process that a model of large batches (Pretrain's
    training) runs each op on the threads `import keras_meta` set for the
    tasks in flight, and how to give it every core."""
    global _large_batch_warned
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    if _large_batch_warned or not _threads_set_at_import or threads == 0:
        return
    _large_batch_warned = True
    warnings.warn(
        f"{model_name} trains on large batches, which run faster with every "
        f"core per op, but `import keras_meta` set TensorFlow to {threads} "
        "thread(s) per op for the meta-learners' tasks in flight. Call "
        "keras_meta.config.set_task_parallelism(1) before building a model "
        f"(as train/pretrain.py does), or set {KEEP_THREADS_VARIABLE}=keep "
        "in the environment.",
        stacklevel=3,
    )


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process, or
    None if this TensorFlow cannot say.

    TensorFlow decides once, when it loads, from `TF_ENABLE_ONEDNN_OPTS`
    (by default: on for x86 CPUs with AVX-512 features, off for others).
    `import keras_meta` before TensorFlow asks for them on every x86 CPU.
    """
    from keras_meta import compat

    return compat.onednn_enabled()


_cpu_kernels_checked = False


def warn_if_slow_cpu_kernels():
    """Warns once per process when meta-learning runs on an x86 CPU
    without oneDNN kernels and nobody chose that: TensorFlow was imported
    before keras_meta on a CPU where its default leaves them off."""
    global _cpu_kernels_checked
    if _cpu_kernels_checked:
        return
    _cpu_kernels_checked = True
    if (
        not _onednn.X86
        or _onednn.VARIABLE in os.environ
        or onednn_enabled() is not False
        or _has_accelerator()
    ):
        return
    warnings.warn(
        "TensorFlow's oneDNN CPU kernels are off in this process: TensorFlow "
        "was imported before keras_meta, and on this CPU (no AVX-512) it "
        "leaves them off by default; meta-training is faster with them "
        "(keras-meta's benchmarks/README.md). Import "
        "keras_meta before keras and tensorflow, or start Python with "
        "TF_ENABLE_ONEDNN_OPTS=1 (=0 silences this).",
        stacklevel=2,
    )
