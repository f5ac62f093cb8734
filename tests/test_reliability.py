"""Reliability: bad input anywhere gets a clear error, a NaN never becomes
a result, and a SavedModel refuses bad requests instead of crashing.

In-process checks of the library; the scripts' side is in
tests/test_scripts.py (exit codes, run folders, checkpoint faults).
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)


def conv_maml(size=12, ways=3):
    learner = keras_meta.models.conv4(ways, (size, size, 1), 4, "stride")
    model = keras_meta.MAML(learner, inner_lr=0.3)
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    return model


def episode(tasks=2, shots=2, queries=2, ways=3, size=12):
    x = {
        "support_x": RNG.random((tasks, ways * shots, size, size, 1), "f4"),
        "support_y": np.tile(np.repeat(np.arange(ways), shots), (tasks, 1)),
        "query_x": RNG.random((tasks, ways * queries, size, size, 1), "f4"),
    }
    y = np.tile(np.repeat(np.arange(ways), queries), (tasks, 1))
    return x, y


def test_a_bad_label_in_a_later_batch_stops_fit_with_a_clear_error():
    good = episode()
    bad_x, bad_y = episode()
    bad_y = bad_y.copy()
    bad_y[1, 0] = 9
    dataset = tf.data.Dataset.from_tensors(good).concatenate(
        tf.data.Dataset.from_tensors((bad_x, bad_y))
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"0\.\.2"):
        conv_maml().fit(dataset, epochs=1, verbose=0)


def test_direct_call_checks_support_labels():
    x, _ = episode()
    x["support_y"] = x["support_y"].copy()
    x["support_y"][0, 0] = -1
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        conv_maml()(x)


@pytest.mark.parametrize("value, message", [(0.7, "whole"), (5.5, "whole")])
def test_float_labels_must_be_class_ids(value, message):
    x, y = episode()
    x["support_y"] = x["support_y"].astype("float32")
    x["support_y"][0, 1] = value
    with pytest.raises(ValueError, match=message):
        conv_maml().fit(x, y, verbose=0)
    # Whole numbers in a float array are accepted.
    x["support_y"][0, 1] = 1.0
    conv_maml().fit(x, y.astype("float32"), verbose=0)


def test_query_label_count_and_empty_query_set():
    x, y = episode()
    with pytest.raises(ValueError, match="one label per example of query_x"):
        conv_maml().fit(x, y[:, :-1], verbose=0)
    x, y = episode(queries=0)
    with pytest.raises(ValueError, match="query set is empty"):
        conv_maml().fit(x, y, verbose=0)


def test_image_size_is_checked_against_the_learner():
    x, y = episode()
    x["query_x"] = x["query_x"][:, :, :10]
    with pytest.raises(ValueError, match=r"shape \(10, 12, 1\).*\(12, 12, 1\)"):
        conv_maml().fit(x, y, verbose=0)
    x, _ = episode(size=16)
    with pytest.raises(ValueError, match="learner takes"):
        conv_maml().adapt(x["support_x"][0], x["support_y"][0])


def test_meaningless_settings_are_refused():
    learner = keras_meta.models.conv4(3, (12, 12, 1), 4, "stride")
    with pytest.raises(ValueError, match="positive and finite"):
        keras_meta.MAML(learner, inner_lr=float("inf"))
    with pytest.raises(ValueError, match="positive and finite"):
        keras_meta.MAML(learner, inner_lr=float("nan"))
    with pytest.raises(ValueError, match="inner_steps must be >= 1"):
        keras_meta.Reptile(learner, inner_steps=0)


@pytest.mark.integration  # through files or a compiler: second tier
def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
    tmp_path,
):
    model = conv_maml()
    x, y = episode()
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    checkpoint = keras_meta.callbacks.MetaCheckpoint(tmp_path, every=1)
    stop = keras_meta.callbacks.TerminateOnNonFinite(print_fn=lambda _: None)
    model.fit(
        dataset, steps_per_epoch=2, callbacks=[stop, checkpoint], verbose=0
    )
    good = [v.numpy() for v in model.learner.trainable_variables]
    # Blow the weights up: the next loss is not finite.
    model.learner.trainable_variables[0].assign(
        np.full(model.learner.trainable_variables[0].shape, np.inf, "f4")
    )
    model.fit(
        dataset, steps_per_epoch=5, callbacks=[stop, checkpoint], verbose=0
    )
    assert stop.stopped_at == 3 and "iteration 3" in stop.message
    assert "learning rate" in stop.message
    restored, state = keras_meta.callbacks.load_checkpoint(tmp_path)
    assert state["iteration"] == 2
    for saved, expected in zip(restored.learner.trainable_variables, good):
        np.testing.assert_array_equal(saved.numpy(), expected)
    assert checkpoint.save() is None  # non-finite weights are never written


@pytest.mark.integration  # through files or a compiler: second tier
def test_corrupt_checkpoint_files_are_named(tmp_path):
    model = conv_maml()
    x, y = episode()
    model.fit(x, y, verbose=0)
    checkpoint = keras_meta.callbacks.MetaCheckpoint(tmp_path, every=1)
    checkpoint.set_model(model)
    checkpoint.save()
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    model_file = tmp_path / state["model"]
    model_file.write_bytes(model_file.read_bytes()[:1000])  # truncated
    with pytest.raises(keras_meta.callbacks.CheckpointError) as error:
        keras_meta.callbacks.load_checkpoint(tmp_path)
    assert str(model_file) in str(error.value) and "truncated" in str(
        error.value
    )
    (tmp_path / "checkpoint.json").write_text('{"iteration": 1, "mod')
    with pytest.raises(keras_meta.callbacks.CheckpointError) as error:
        keras_meta.callbacks.load_checkpoint(tmp_path)
    assert "checkpoint.json" in str(error.value) and "corrupt" in str(
        error.value
    )


BAD_REQUESTS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    serve = model.signatures["serving_default"]
    rng = np.random.default_rng(0)
    def x(n, *shape):
        return tf.constant(rng.random((n, *shape), dtype=np.float32))
    def y(*values):
        return tf.constant(values, tf.int32)
    good = dict(support_x=x(3, 12, 12, 1), support_y=y(0, 1, 2),
                query_x=x(4, 12, 12, 1))
    cases = {
        "good": {},
        "no channel axis": dict(support_x=x(3, 12, 12)),
        "query images of another size": dict(query_x=x(4, 16, 16, 1)),
        "label above ways": dict(support_y=y(0, 1, 9)),
        "negative label": dict(support_y=y(0, -1, 2)),
        "more labels than images": dict(support_y=y(0, 1, 2, 1)),
        "empty support set": dict(support_x=x(0, 12, 12, 1),
                                  support_y=y()),
        "empty query set": dict(query_x=x(0, 12, 12, 1)),
        "an inf pixel in one query": dict(
            query_x=tf.tensor_scatter_nd_update(
                good["query_x"], [[2, 5, 5, 0]], [np.inf])),
        "a NaN in the support set": dict(
            support_x=tf.tensor_scatter_nd_update(
                good["support_x"], [[0, 1, 1, 0]], [np.nan])),
    }
    out = {}
    for name, change in cases.items():
        try:
            logits = serve(**{**good, **change})["logits"]
            out[name] = "ok " + str(tuple(logits.shape))
        except tf.errors.InvalidArgumentError as e:
            out[name] = "InvalidArgumentError " + e.message
    print(json.dumps(out))
""")


@pytest.mark.integration  # through files or a compiler: second tier
def test_saved_model_refuses_bad_requests_with_clear_errors(tmp_path):
    model = conv_maml()
    model.export(tmp_path / "exported")
    script = tmp_path / "serve_bad_requests.py"
    script.write_text(BAD_REQUESTS)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "exported")],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # nothing aborted
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("good") == "ok (4, 3)"
    expected = {
        "no channel axis": "support_x must have rank 4",
        "query images of another size": "query_x must hold at least one "
        "example of shape (12, 12, 1)",
        "label above ways": "outside 0..2",
        "negative label": "outside 0..2",
        "more labels than images": "one label per example of support_x",
        "empty support set": "support_x must hold at least one example",
        "empty query set": "query_x must hold at least one example",
        "an inf pixel in one query": "query_x holds NaN or infinite values",
        "a NaN in the support set": "support_x holds NaN or infinite",
    }
    for name, message in expected.items():
        assert out[name].startswith("InvalidArgumentError"), (name, out[name])
        assert message in out[name], (name, out[name])


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from keras_meta.cli.run_folder import RunFolder
    RunFolder(sys.argv[1]).lock()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_a_run_folder_is_locked_for_its_process_life_only(tmp_path):
    from keras_meta.cli.errors import UsageError
    from keras_meta.cli.run_folder import RunFolder

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"process {holder.pid}"):
            RunFolder(tmp_path / "run").lock()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    # The OS dropped the dead process's lock: the folder is free again.
    folder = RunFolder(tmp_path / "run")
    folder.lock()
    assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"
    assert not folder.holds_files()  # the lock file alone is no run
