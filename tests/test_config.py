"""`keras_meta.config`: where the tasks of a meta-batch run (their own
thread pool by default, TensorFlow's global pools on request), the same
meta-gradient on every route (checked against a closed form), errors, and
the oneDNN kernels."""

import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta
from keras_meta.engine import tasks as engine_tasks
from tests.test_meta_gradients import (
    closed_form_meta_gradient,
    linear_learner,
    meta_step,
    regression_tasks,
)

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[1]
CPU_ONLY = not (
    tf.config.list_physical_devices("GPU")
    or tf.config.list_physical_devices("TPU")
)

# Runs in a fresh process, where TensorFlow has not started yet.
GLOBAL_THREADS = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{repo!r}, {repo!r} + "/tests"]
    import keras_meta
    import tensorflow as tf

    tasks = keras_meta.config.set_task_parallelism(2, "global")
    assert tasks == 2 == keras_meta.config.task_parallelism()
    assert keras_meta.config.private_pool_threads() is None
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


def test_global_threads_split_the_cores_and_keep_the_meta_gradient():
    result = subprocess.run(
        [sys.executable, "-c", GLOBAL_THREADS.format(repo=str(REPO))],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


@pytest.fixture
def own_pool_calls(monkeypatch):
    """Counts the meta-batches whose tasks were traced on their own pool."""
    calls = []
    original = engine_tasks.on_own_pool

    def counted(*args):
        calls.append(args[-1])  # threads per op
        return original(*args)

    monkeypatch.setattr(engine_tasks, "on_own_pool", counted)
    yield calls
    keras_meta.config.set_task_parallelism()  # back to the default


@pytest.mark.skipif(not CPU_ONLY, reason="the own pool is for CPU hosts")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_by_default_tasks_run_on_their_own_pool_with_the_same_gradient(
    float64, own_pool_calls
):
    keras_meta.config.set_task_parallelism()  # the default, as never set
    global_threads = tf.config.threading.get_intra_op_parallelism_threads()
    assert keras_meta.config.task_parallelism() == 2
    alpha, steps = 0.05, 2
    # 5 tasks: an odd count, so the last pair is incomplete; the closed
    # form pairs task i's inputs with task i's outputs, so an order mix-up
    # would show.
    x, y = regression_tasks(tasks=5)
    maml = keras_meta.MAML(linear_learner(4), inner_lr=alpha, inner_steps=steps)
    w0 = maml.learner.trainable_variables[0].numpy().copy()
    before, after = meta_step(maml, (x, y))
    np.testing.assert_allclose(
        before[0] - after[0],
        closed_form_meta_gradient(w0, x, y, alpha, steps, True),
        rtol=1e-9,
        atol=1e-12,
    )
    assert own_pool_calls == [max(1, os.cpu_count() // 2)]
    # Evaluation adapts on the same pool: the query loss after `steps`
    # steps from the new weights, against numpy.
    w1 = after[0]
    losses = []
    for t in range(5):
        sx, sy, qx = x["support_x"][t], x["support_y"][t], x["query_x"][t]
        w = w1
        for _ in range(steps):
            w = w - alpha * 2 * sx.T @ (sx @ w - sy) / len(sy)
        losses.append(np.mean((qx @ w - y[t]) ** 2))
    loss = maml.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    np.testing.assert_allclose(loss["loss"], np.mean(losses), rtol=1e-6)
    assert len(own_pool_calls) == 2
    # TensorFlow's own thread pools were never touched.
    assert tf.config.threading.get_intra_op_parallelism_threads() == (
        global_threads
    )


@pytest.mark.parametrize(
    "setting", [(1, "auto"), (2, None), ("jit", None)], ids=str
)
def test_other_settings_run_tasks_in_a_loop_with_the_same_gradient(
    float64, own_pool_calls, setting
):
    tasks, threads = setting
    jit = tasks == "jit"
    if not jit:
        keras_meta.config.set_task_parallelism(tasks, threads)
    alpha, steps = 0.05, 2
    x, y = regression_tasks(tasks=3)
    maml = keras_meta.MAML(linear_learner(4), inner_lr=alpha, inner_steps=steps)
    w0 = maml.learner.trainable_variables[0].numpy().copy()
    maml.compile(
        optimizer=keras.optimizers.SGD(1.0), loss="mse", jit_compile=jit
    )
    maml.fit(x, y, batch_size=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        w0 - maml.learner.trainable_variables[0].numpy(),
        closed_form_meta_gradient(w0, x, y, alpha, steps, True),
        rtol=1e-9,
        atol=1e-12,
    )
    assert own_pool_calls == []


def test_after_tensorflow_started_only_global_threads_are_refused():
    tf.constant(1.0) + 1.0  # TensorFlow has started in this process
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    try:
        # The tasks' own pool and the tasks in flight need no restart.
        assert keras_meta.config.set_task_parallelism(2) == 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert keras_meta.config.set_task_parallelism(2, None) == 2
        # A loop on TensorFlow's threading would want every core per op,
        # which the threads `import keras_meta` set (if they still hold)
        # cannot give once TensorFlow has started: said, not raised.
        claimed = keras_meta.config._threads_set_at_import
        assert len(caught) == (1 if claimed and threads else 0)
        assert keras_meta.config.task_parallelism() == 2
        assert keras_meta.config.private_pool_threads() is None
        assert tf.config.threading.get_intra_op_parallelism_threads() == (
            threads
        )
        if CPU_ONLY:  # a GPU needs no change
            with pytest.raises(RuntimeError, match="at the start of the"):
                # Global threads other than TensorFlow's now.
                keras_meta.config.set_task_parallelism(
                    1 if threads else 3, "global"
                )
        with pytest.raises(ValueError, match="threads_per_op"):
            keras_meta.config.set_task_parallelism(2, threads_per_op=1)
        assert keras_meta.config.task_parallelism() == 2
    finally:
        keras_meta.config.set_task_parallelism()


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
    variable, enabled, warnings = printed_in_fresh_process(code, env)[-3:]
    return variable, enabled == "True", int(warnings)


def printed_in_fresh_process(code, env):
    """The words `code` prints when run by a fresh interpreter in `env`."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


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


# Runs in a fresh process: TensorFlow's intra-op threads after `import
# keras_meta`, for one environment and one earlier choice of the program.
IMPORT_THREADS = textwrap.dedent(
    """
    import os, sys, warnings
    sys.path[:0] = [{repo!r}]
    import tensorflow as tf
    if {preset}:
        tf.config.threading.set_intra_op_parallelism_threads({preset})
    import keras_meta
    seen = [tf.config.threading.get_intra_op_parallelism_threads()]
    keras_meta.config.set_task_parallelism(1)  # every core per op
    seen.append(tf.config.threading.get_intra_op_parallelism_threads())
    keras_meta.config.set_task_parallelism()  # back to the default
    seen.append(tf.config.threading.get_intra_op_parallelism_threads())
    # TensorFlow starts (its pools are now fixed) with a large-batch model,
    # which is told how to get every core per op back.
    import keras, numpy as np
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras_meta.Pretrain(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
            adaptation="fine_tune")
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.zeros((8, 4)), np.zeros((8, 1)), verbose=0)
    seen.append(sum("large batches" in str(w.message) for w in caught))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_meta.config.set_task_parallelism(1)
    seen.append(len(caught))
    print(*seen)
    """
)


def import_threads(keep=False, preset=0):
    """`[threads after import, after set_task_parallelism(1), after the
    default again, warnings from training Pretrain, warnings from
    set_task_parallelism(1) once TensorFlow has started]`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_META_TF_THREADS", None)
    if keep:
        env["KERAS_META_TF_THREADS"] = "keep"
    code = IMPORT_THREADS.format(repo=str(REPO), preset=preset)
    return [int(v) for v in printed_in_fresh_process(code, env)[-5:]]


@pytest.mark.skipif(not CPU_ONLY, reason="nothing is set with a GPU")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_import_sets_one_thread_per_op_per_task_unless_told_not_to():
    half = os.cpu_count() // 2
    # Two tasks in flight, each op on half the cores (oneDNN's kernels take
    # TensorFlow's global threads); one task at a time gets every core
    # back (0: TensorFlow's choice) while TensorFlow has not started.
    # Pretrain's training is warned once; once TensorFlow has started, a
    # warning says that one task at a time cannot get every core.
    assert import_threads() == [half, 0, half, 1, 1]
    # Told to keep TensorFlow's threading: nothing set, nothing to warn.
    assert import_threads(keep=True) == [0, 0, 0, 0, 0]
    # The program's own setting, made before the import, is kept.
    assert import_threads(preset=3) == [3, 3, 3, 0, 0]
