"""`keras_meta.config.set_task_parallelism`: threads, errors, and the same
meta-gradient with tasks run side by side (checked against a closed form)."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import keras_meta

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[1]

# Runs in a fresh process, where TensorFlow has not started yet.
PARALLEL_TASKS = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{repo!r}, {repo!r} + "/tests"]
    import keras_meta
    import tensorflow as tf

    tasks = keras_meta.config.set_task_parallelism(2)
    assert tasks == 2 == keras_meta.config.task_parallelism()
    # On a CPU-only host the cores are split; with a GPU the ops run there
    # and TensorFlow's threading is left as it is (0: its own choice).
    accelerator = tf.config.list_physical_devices("GPU") or (
        tf.config.list_physical_devices("TPU"))
    threads = 0 if accelerator else max(1, os.cpu_count() // 2)
    assert tf.config.threading.get_intra_op_parallelism_threads() == threads, (
        tf.config.threading.get_intra_op_parallelism_threads())

    import keras
    import numpy as np
    from tests.test_meta_gradients import (
        closed_form_meta_gradient, linear_learner, meta_step,
        regression_tasks,
    )

    keras.config.set_floatx("float64")
    alpha, steps = 0.05, 2
    episode = regression_tasks(tasks=5)
    maml = keras_meta.MAML(linear_learner(4), inner_lr=alpha,
                           inner_steps=steps)
    w0 = maml.learner.trainable_variables[0].numpy().copy()
    expected = closed_form_meta_gradient(w0, *episode, alpha, steps, True)
    before, after = meta_step(maml, episode)
    np.testing.assert_allclose(before[0] - after[0], expected,
                               rtol=1e-9, atol=1e-12)
    print("OK")
    """
)


def test_two_tasks_at_once_split_the_cores_and_keep_the_meta_gradient():
    result = subprocess.run(
        [sys.executable, "-c", PARALLEL_TASKS.format(repo=str(REPO))],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_after_tensorflow_started_a_thread_change_is_refused_clearly():
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    assert keras_meta.config.task_parallelism() == 1
    if not tf.config.list_physical_devices("GPU"):  # a GPU needs no change
        with pytest.raises(RuntimeError, match="at the start of the program"):
            keras_meta.config.set_task_parallelism(2)
        assert keras_meta.config.task_parallelism() == 1
    # The default needs no change, so it is accepted.
    assert keras_meta.config.set_task_parallelism(1) == 1
    # Tasks in flight alone can change: TensorFlow's threading stays.
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    try:
        assert keras_meta.config.set_task_parallelism(2, None) == 2
        assert keras_meta.config.task_parallelism() == 2
        assert tf.config.threading.get_intra_op_parallelism_threads() == threads
        with pytest.raises(ValueError, match="threads_per_op"):
            keras_meta.config.set_task_parallelism(2, threads_per_op=1)
    finally:
        keras_meta.config.set_task_parallelism(1)


@pytest.mark.parametrize(
    "tasks, error",
    [
        (0, ValueError),
        (-2, ValueError),
        ("two", TypeError),
        (True, TypeError),
        (1.5, TypeError),
    ],
)
def test_bad_task_counts_are_rejected(tasks, error):
    with pytest.raises(error, match="tasks must"):
        keras_meta.config.set_task_parallelism(tasks)


# Runs in a fresh process: which CPU kernels TensorFlow gets, and whether
# building a meta-learner warns, for one import order and environment.
CPU_KERNELS = textwrap.dedent(
    """
    import os, sys, warnings
    sys.path[:0] = [{repo!r}]
    if {tensorflow_first}:
        import tensorflow
    import keras_meta
    from keras_meta.models import conv4

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_meta.MAML(conv4(ways=2, filters=4), inner_lr=0.1)
        keras_meta.MAML(conv4(ways=2, filters=4), inner_lr=0.1)
    warned = [w for w in caught if "oneDNN" in str(w.message)]
    print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
          keras_meta.config.onednn_enabled(), len(warned))
    """
)


def cpu_kernels(tensorflow_first, setting):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = CPU_KERNELS.format(repo=str(REPO), tensorflow_first=tensorflow_first)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    variable, enabled, warnings = result.stdout.split()[-3:]
    return variable, enabled == "True", int(warnings)


@pytest.mark.skipif(
    not keras_meta._onednn.X86, reason="oneDNN is asked for on x86 CPUs only"
)
def test_imported_first_keras_meta_asks_for_onednn_and_the_user_wins():
    # Imported before TensorFlow: oneDNN on, nothing to warn about.
    assert cpu_kernels(False, None) == ("1", True, 0)
    # The user's explicit choice is kept, and not warned about.
    assert cpu_kernels(False, "0") == ("0", False, 0)
    # TensorFlow first: its own default stays; a warning (once per process)
    # says how to get the kernels exactly when they are off on a CPU host.
    variable, enabled, warnings = cpu_kernels(True, None)
    assert variable == "None"
    import tensorflow as tf

    cpu_only = not tf.config.list_physical_devices("GPU")
    assert warnings == (1 if cpu_only and not enabled else 0)
