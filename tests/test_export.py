"""SavedModels that adapt to one task inside the graph and predict."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_meta

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)

LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, inputs, output, threads = sys.argv[1:5]
    # The test process's threads per op (`import keras_meta` sets them):
    # oneDNN's sums then run in the same order, so the numbers can agree
    # to float32 round-off of one computation.
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    arrays = dict(np.load(inputs))
    model = tf.saved_model.load(path)
    serve = model.signatures["serving_default"]
    result = serve(**{k: tf.constant(v) for k, v in arrays.items()})
    np.save(output, next(iter(result.values())).numpy())
    print(json.dumps({"keras_meta_imported": "keras_meta" in sys.modules,
                      "keys": sorted(result)}))
""")


def reference(model, support_x, support_y, query_x):
    """`model.adapt` + the learner's forward pass with the adapted weights."""
    weights = model.adapt(support_x, support_y)
    state = [v.value for v in model.learner.non_trainable_variables]
    y_pred, _ = model.learner.stateless_call(
        weights, state, query_x, training=True
    )
    return y_pred.numpy()


def run_elsewhere(tmp_path, export_dir, arrays):
    """Loads and runs the SavedModel in a process without keras_meta."""
    np.savez(tmp_path / "inputs.npz", **arrays)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(export_dir),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "out.npy"),
            str(tf.config.threading.get_intra_op_parallelism_threads()),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    return np.load(tmp_path / "out.npy"), info


@pytest.mark.parametrize(
    "algorithm", ["maml", "anil", "pretrain", "boil", "protonet", "protomaml"]
)
def test_saved_model_adapts_like_the_model(tmp_path, algorithm):
    if algorithm == "pretrain":
        learner = keras_meta.models.conv4(7, (16, 16, 1), filters=4)
        model = keras_meta.Pretrain(
            learner, ways=3, inner_lr=0.5, eval_inner_steps=3
        )
    elif algorithm.startswith("proto"):
        learner = keras_meta.models.conv4(None, (16, 16, 1), filters=4)
        cls = {"protonet": keras_meta.ProtoNet}.get(algorithm)
        model = (
            cls(learner, ways=3)
            if cls
            else keras_meta.ProtoMAML(
                learner, ways=3, inner_lr=0.5, eval_inner_steps=3
            )
        )
    elif algorithm == "boil":
        learner = keras_meta.models.conv4(3, (16, 16, 1), filters=4)
        model = keras_meta.BOIL(learner, inner_lr=0.5, eval_inner_steps=3)
    else:
        learner = keras_meta.models.conv4(3, (16, 16, 1), filters=4)
        cls = keras_meta.MAML if algorithm == "maml" else keras_meta.ANIL
        model = cls(learner, inner_lr=0.5, eval_inner_steps=3)
    model.compile(optimizer="adam", loss=LOSS)
    model.export(tmp_path / "exported")

    # Support and query sizes never traced: 9 support, 7 query images.
    arrays = {
        "support_x": RNG.random((9, 16, 16, 1)).astype("float32"),
        "support_y": np.array([0, 1, 2] * 3, np.int32),
        "query_x": RNG.random((7, 16, 16, 1)).astype("float32"),
    }
    logits, info = run_elsewhere(tmp_path, tmp_path / "exported", arrays)
    assert not info["keras_meta_imported"]
    assert info["keys"] == ["logits"]
    if algorithm in ("pretrain", "boil") or algorithm.startswith("proto"):
        expected = model.predict_on_batch(
            {k: v[None] for k, v in arrays.items()}
        )[0]
    else:
        expected = reference(model, *arrays.values())
    assert logits.shape == (7, 3)
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_regression_export_and_saved_model_cli(tmp_path):
    model = keras_meta.MAML(
        keras_meta.models.mlp(), inner_lr=0.05, eval_inner_steps=2
    )
    model.compile(loss="mse")
    model.export(tmp_path / "sine")
    arrays = {
        "support_x": RNG.uniform(-5, 5, (10, 1)).astype("float32"),
        "support_y": RNG.normal(size=(10, 1)).astype("float32"),
        "query_x": RNG.uniform(-5, 5, (4, 1)).astype("float32"),
    }
    expected = reference(model, *arrays.values())

    cli = shutil.which("saved_model_cli")
    assert cli, "saved_model_cli (installed with TensorFlow) is not on PATH"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run(
        [cli, "show", "--dir", str(tmp_path / "sine"), "--all"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert "serving_default" in shown and "support_x" in shown
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    subprocess.run(
        [
            cli,
            "run",
            "--dir",
            str(tmp_path / "sine"),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            ";".join(f"{k}={tmp_path / k}.npy" for k in arrays),
            "--outdir",
            str(tmp_path / "cli_out"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    predictions = np.load(tmp_path / "cli_out" / "predictions.npy")
    np.testing.assert_allclose(predictions, expected, atol=1e-5, rtol=0)


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model = keras_meta.MAML(keras_meta.models.mlp())
    model.compile(loss="mse")
    model.export(tmp_path / "model")  # a good export already in place
    before = sorted(os.listdir(tmp_path / "model"))

    def fail(self, filepath, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))
        open(os.path.join(filepath, "saved_model.pb"), "w").close()
        raise OSError("disk full")

    # ExportArchive() builds the backend's own archive class: patch that.
    backend_archive = type(keras.export.ExportArchive())
    monkeypatch.setattr(backend_archive, "write_out", fail)
    with pytest.raises(OSError, match="disk full"):
        model.export(tmp_path / "model")
    with pytest.raises(OSError, match="disk full"):
        model.export(tmp_path / "fresh")
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no partial folders
    assert sorted(os.listdir(tmp_path / "model")) == before
