"""Process-wide settings, in the manner of `keras.config`.

`set_task_parallelism` decides how the T tasks of a meta-batch share the
machine. By default they run one after another inside one graph and each
TensorFlow op splits its work over every CPU core. The ops of a few-shot task
are small (a 5-image support set, a 28x28 convolution), so on a CPU that split
costs about as much in synchronisation as it gains: running two tasks side by
side, each op on its own core, measured 1.05-1.6x faster on a 2-core machine
for every meta-learner (`benchmarks/README.md`). It is a setting rather than
the default because TensorFlow's thread pools are global to the process and
fixed once it runs its first op: a large-batch model in the same process
(`Pretrain`, or any other Keras model) runs about 1.3x slower with one
thread per op.

    import keras_meta
    keras_meta.config.set_task_parallelism("auto")  # first, before any model
"""

import os
import warnings

import tensorflow as tf

from keras_meta import _onednn

# Tasks of a meta-batch in flight at once (`tf.map_fn`'s parallel_iterations).
_task_parallelism = 1


def task_parallelism():
    """The number of tasks of a meta-batch that run at once (default 1)."""
    return _task_parallelism


def _has_accelerator():
    return bool(
        tf.config.list_physical_devices("GPU")
        or tf.config.list_physical_devices("TPU")
    )


def set_task_parallelism(tasks="auto", threads_per_op="auto"):
    """Runs `tasks` tasks of each meta-batch at once, sharing the CPU cores.

    On a host without GPU or TPU this also sets TensorFlow's intra-op thread
    count to `cores // tasks`, so that the tasks' ops run side by side instead
    of each spreading over every core; with an accelerator the ops run there
    and only the number of tasks in flight changes. Peak memory grows with
    `tasks`: each task in flight holds its activations until its
    meta-gradient is taken (20-way Omniglot MAML: 1257 MiB with one task,
    1467 MiB with two).

    Call it at the start of the program, before building a model or running
    any TensorFlow op: TensorFlow fixes its thread pools then.

    Args:
        tasks: a positive int, or `"auto"`: 2 on a CPU-only host with at
            least 2 cores (the setting measured fastest on 2 cores), else 1.
            `1` restores the default (one task at a time, TensorFlow's
            threading).
        threads_per_op: `"auto"` (the above), or None to leave TensorFlow's
            threading as it is and change only the tasks in flight (safe
            after TensorFlow has started; a lever the benchmarks measure).

    Returns:
        The number of tasks in flight now.

    Raises:
        RuntimeError: TensorFlow has already started and its thread count
            differs from the one this setting needs.
    """
    global _task_parallelism
    cores = os.cpu_count() or 1
    accelerator = _has_accelerator()
    if tasks == "auto":
        tasks = 2 if cores >= 2 and not accelerator else 1
    if isinstance(tasks, bool) or not isinstance(tasks, int):
        raise TypeError(
            f'tasks must be a positive int or "auto", got {tasks!r}.'
        )
    if tasks < 1:
        raise ValueError(f"tasks must be at least 1, got {tasks}.")
    if threads_per_op not in ("auto", None):
        raise ValueError(
            f'threads_per_op must be "auto" or None, got {threads_per_op!r}.'
        )
    if not accelerator and threads_per_op == "auto":
        _set_threads_per_op(tasks, cores)
    _task_parallelism = tasks
    return tasks


def _set_threads_per_op(tasks, cores):
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
                f"set_task_parallelism({tasks}) needs {wanted}, but "
                "TensorFlow has already started with its thread pools "
                "fixed. Call "
                "keras_meta.config.set_task_parallelism() at the start "
                "of the program, before building a model or running any "
                "TensorFlow op."
            ) from e


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process, or
    None if this TensorFlow cannot say.

    TensorFlow decides once, when it loads, from `TF_ENABLE_ONEDNN_OPTS`
    (by default: on for x86 CPUs with AVX-512 features, off for others).
    `import keras_meta` before TensorFlow asks for them on every x86 CPU.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


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
        "leaves them off by default. Meta-training conv4 measured about 1.5x "
        "faster with them (keras-meta's benchmarks/README.md). Import "
        "keras_meta before keras and tensorflow, or start Python with "
        "TF_ENABLE_ONEDNN_OPTS=1 (=0 silences this).",
        stacklevel=2,
    )
