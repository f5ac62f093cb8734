"""Process-wide settings, in the manner of `keras.config`.

`set_task_parallelism` decides how the T tasks of a meta-batch share the
machine. The ops of a few-shot task are small (a 5-image support set, a 28x28
convolution), so on a CPU splitting each op over every core costs about as
much in synchronisation as it gains, and two tasks side by side run faster.
That is the default on a CPU-only host: the tasks run as a `tf.data` map on
a thread pool of their own, one thread per op, so TensorFlow's global thread
pools stay as they are and any other model in the process (a large-batch
`Pretrain`, any Keras model) keeps every core for each op; on a 2-core
machine it is faster than one task at a time. TensorFlow's oneDNN kernels take
their threads from the global pool whatever that pool's limit says, so
setting the global threads to one per op before TensorFlow starts
(`threads_per_op="global"`, as the training scripts do) is faster still in
most cells (`benchmarks/README.md`). With a GPU or TPU, under XLA or
`tf.distribute`, the tasks run in a `tf.map_fn` loop instead.

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
              threads per op; TensorFlow's global pools are not touched, so
              this may be called at any time and other models keep every
              core. (Under XLA or `tf.distribute`, and with a GPU or TPU,
              the tasks run on TensorFlow's threading instead.)
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
    _task_parallelism = tasks
    _threads_per_op = threads_per_op
    return tasks


def _set_global_threads(tasks, cores):
    """TensorFlow's intra-op threads for `tasks` tasks in flight on `cores`
    cores, or a `RuntimeError` saying when to call if it has started."""
    # 0 is TensorFlow's "let it choose": every core for every op.
    threads = 0 if tasks == 1 else max(1, cores // tasks)
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
