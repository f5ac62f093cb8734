"""The training scripts end to end, on tiny budgets."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_meta  # noqa: F401  (registers the classes load_model reads)
from keras_meta.cli import evaluate
from keras_meta.cli.errors import UsageError

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[1]
CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# Small Omniglot tasks and a small conv4.
SMALL_OMNIGLOT = [
    "--filters=8",
    "--meta_batch=4",
    "--queries=2",
    "--eval_queries=2",
]
# Evaluation and checkpoints every 2 iterations, on 20 tasks.
OFTEN = [
    "--eval_every=2",
    "--checkpoint_every=2",
    "--val_tasks=20",
    "--curve_tasks=20",
    "--curve_steps=2",
]
TINY_BUDGET = ["--iterations=4", "--eval_tasks=20", *OFTEN]
# No --verbose: into a pipe, the scripts log one line per epoch.
TINY = ["--dataset=omniglot", *SMALL_OMNIGLOT, *TINY_BUDGET]


def data_dir_flag():
    from conftest import shared_data_dir

    return f"--data_dir={shared_data_dir() / 'tfds'}"


def run_module(module, *flags, check=True, timeout=600, **kwargs):
    """`python -m module flags...` from the repository, output captured;
    with `check`, a non-zero exit fails the test with its output."""
    command = [sys.executable, "-m", module, *flags]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=CHILD_ENV,
        timeout=timeout,
        **kwargs,
    )
    if check and result.returncode:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def in_background(command):
    """`command` started from the repository, its output captured."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def script(algorithm, *flags, **kwargs):
    """A training script (`train.<algorithm>`) on the shared Omniglot."""
    return run_module(f"train.{algorithm}", data_dir_flag(), *flags, **kwargs)


def check_run_folder(out, metric="accuracy"):
    """Every output file exists and loads."""
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["metric"] == metric
    assert results["num_test_tasks"] == 20
    assert results["bn_mode"] == "transductive"
    # The MAML protocol, each test task's score kept in the order of the
    # tasks: with one query per class, an accuracy is a multiple of 1/N.
    assert results["protocol"] == "maml"
    scores = results[
        "task_" + ("accuracies" if metric == "accuracy" else "losses")
    ]
    assert len(scores) == 20 and np.mean(scores) == pytest.approx(
        results["test"]["mean"], abs=1e-6
    )
    if metric == "accuracy":
        ways = results["config"]["ways"]
        hits = np.multiply(scores, ways)
        np.testing.assert_allclose(hits, np.round(hits), atol=1e-6)
    assert list(results["evaluations"]) == ["maml/transductive"]
    assert results["wall_time_seconds"] > 0
    assert "git_revision" in results and results["config"]["iterations"]
    assert [p["steps"] for p in results["test_by_steps"]] == [0, 1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config == results["config"]

    model = keras.models.load_model(out / "model.keras")
    assert model.optimizer.iterations.numpy() == config["iterations"]
    saved = tf.saved_model.load(str(out / "saved_model"))
    assert "serving_default" in saved.signatures
    for png in ("learning_curve.png", "accuracy_vs_steps.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG" and image.size[0] > 100
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + config["iterations"] // config["eval_every"]
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    checkpoint = json.loads(
        (out / "checkpoint" / "checkpoint.json").read_text()
    )
    assert checkpoint["iteration"] == config["iterations"]
    return results, model


@pytest.fixture(scope="module")
def tiny_maml_run(tmp_path_factory):
    """`train.maml` on TINY: (its folder, its completed process)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    return out, script("maml", *TINY, f"--output_dir={out}")


def test_maml_script_end_to_end(tiny_maml_run):
    out, result = tiny_maml_run
    assert "meta-test accuracy" in result.stdout
    assert "iteration 4:" in result.stdout
    # Not a terminal: no live progress bar redrawn with \r and \b.
    assert "\b" not in result.stdout and "\r" not in result.stdout
    assert "2/2 - " in result.stdout  # Keras's one line per epoch
    results, model = check_run_folder(out)
    assert isinstance(model, __import__("keras_meta").MAML)

    # The SavedModel adapts and predicts a task of the test split.
    from keras_meta.data import omniglot

    x, _ = next(
        iter(
            omniglot(
                "test",
                5,
                1,
                3,
                1,
                data_dir=data_dir_flag().split("=", 1)[1],
                download=False,
            )
        )
    )
    saved = tf.saved_model.load(str(out / "saved_model"))
    logits = saved.signatures["serving_default"](
        support_x=x["support_x"][0],
        support_y=x["support_y"][0],
        query_x=x["query_x"][0],
    )["logits"]
    expected = model.predict_on_batch(x)[0]
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-5)

    # --resume on the finished run has nothing to do and changes nothing.
    before = {p: p.stat().st_mtime for p in out.rglob("*")}
    again = script("maml", "--resume", f"--output_dir={out}")
    assert "nothing to do" in again.stdout
    assert {p: p.stat().st_mtime for p in out.rglob("*")} == before


BAD_FLAGS = [
    ("maml", ["--preset=maml_omniglot_7w1s"], "value should be one of"),
    ("maml", ["--no_such_flag=3"], "Unknown command line flag"),
    ("maml", ["--ways=-2"], "--ways"),
    ("reptile", ["--first_order"], "--first_order applies to train.maml"),
    ("anil", ["--preset=maml_omniglot_5w1s"], "is for train.maml"),
    ("maml", ["--dataset=no_such_dataset_here"], "Unknown dataset"),
    ("maml", ["--ways=5000", *TINY], "ways=5000 is more than"),
    ("maml", ["--bn_mode=moving", *TINY], "bn_mode must be one of"),
    ("maml", ["--inner_lr=0", *TINY], "inner_lr must be positive"),
    ("maml", ["--resume", "--overwrite"], "contradict"),
    ("maml", ["--task_parallelism=two"], "neither a positive int"),
    ("anil", ["--task_parallelism=0"], "must be at least 1"),
    ("maml", ["--protocol=paper"], "Unknown protocol 'paper': choose among"),
    ("maml", ["--protocol=maml,maml"], "names one protocol twice"),
    ("compare", ["--seeds=0"], "--seeds=0: train each row at least once"),
    ("maml", ["--minutes=0"], "--minutes must be positive"),
    ("maml", ["--ways=1000", *TINY], "ways=1000 is more than the 400 classes"),
    ("compare", ["--protocol=nope"], "Unknown protocol 'nope': choose among"),
]


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
    """Every BAD_FLAGS command, started at once (each mostly imports
    TensorFlow), as `{index: (CompletedProcess-like, output folder)}`."""
    root = tmp_path_factory.mktemp("bad_flags")
    started = {}
    for index, (algorithm, flags, _) in enumerate(BAD_FLAGS):
        out = root / str(index) / "out"
        out.parent.mkdir()
        command = [
            sys.executable,
            "-m",
            f"train.{algorithm}",
            data_dir_flag(),
            *flags,
            f"--output_dir={out}",
        ]
        started[index] = (in_background(command), out)
    finished = {}
    for index, (process, out) in started.items():
        stdout, stderr = process.communicate(timeout=600)
        finished[index] = (
            subprocess.CompletedProcess(
                process.args, process.returncode, stdout, stderr
            ),
            out,
        )
    return finished


@pytest.mark.parametrize(
    "index", range(len(BAD_FLAGS)), ids=[" ".join(f[1][:1]) for f in BAD_FLAGS]
)
def test_bad_flags_exit_2_with_a_message(bad_flag_runs, index):
    result, out = bad_flag_runs[index]
    message = BAD_FLAGS[index][2]
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not out.exists()  # nothing half-made


def test_settings_come_from_defaults_then_preset_then_flags():
    help_text = run_module("train.reptile", "--helpfull").stdout
    # Each script's flags show its own real defaults.
    # Each option's help is its constructor's docstring.
    assert "--inner_steps: k >= 1, the inner steps during meta-training" in (
        help_text
    )
    assert "(default: '5')" in help_text.split("--inner_steps:")[1][:200]
    config = json.loads(
        run_module(
            "train.reptile",
            "--preset=reptile_omniglot_5w1s",
            "--inner_steps=7",
            "--print_config",
        ).stdout
    )
    options = config["options"]  # the algorithm's constructor arguments
    assert options["inner_steps"] == 7  # the flag
    assert config["meta_batch"] == 10  # the preset
    assert config["eval_tasks"] is None  # the default: the protocol's
    assert config["protocol"] == "reptile"  # the preset's paper's
    assert options["inner_optimizer"] == "adam"  # the algorithm's default
    assert config["train_shots"] == 15 and options["eval_inner_steps"] == 5
    assert config["eval_queries"] == config["queries"] == 1  # follows


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"precious": true}')
    result = script("maml", *TINY, f"--output_dir={out}", check=False)
    assert result.returncode == 2
    assert "holds another run" in result.stderr
    assert (out / "results.json").read_text() == '{"precious": true}'
    assert sorted(os.listdir(out)) == ["results.json"]
    result = script("maml", "--resume", f"--output_dir={out}", check=False)
    assert result.returncode == 2 and "no checkpoint" in result.stderr


def test_overwrite_removes_only_run_folders(tmp_path):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "cat.jpg").write_bytes(b"not really")
    (mine / "notes.txt").write_text("precious")
    result = script(
        "maml", *TINY, f"--output_dir={mine}", "--overwrite", check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "is not a run folder" in result.stderr
    assert "notes.txt, photos" in result.stderr
    assert sorted(os.listdir(mine)) == ["notes.txt", "photos"]
    assert (mine / "notes.txt").read_text() == "precious"


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in (
        (afile, "is a file, not a folder"),
        (afile / "run", f"lies under {afile}, a file"),
    ):
        result = script("maml", *TINY, f"--output_dir={out}", check=False)
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr
    assert afile.read_text() == "x"


@pytest.mark.slow  # the lock itself: tests/test_reliability.py, by default
def test_two_runs_on_one_folder_one_wins_the_other_exits_2(tmp_path):
    out = tmp_path / "shared"
    flags = [data_dir_flag(), *TINY, "--iterations=20", f"--output_dir={out}"]
    first = in_background([sys.executable, "-m", "train.maml", *flags])
    time.sleep(0.5)
    second = in_background(
        [sys.executable, "-m", "train.maml", *flags, "--seed=7"]
    )
    done = {p: p.communicate(timeout=600) for p in (first, second)}
    codes = sorted(p.returncode for p in done)
    assert codes == [0, 2], [e[-2000:] for _, e in done.values()]
    winner = next(p for p in done if p.returncode == 0)
    loser = next(p for p in done if p.returncode == 2)
    assert (
        f"is in use by another run (process {winner.pid})" in done[loser][1]
        or "holds another run" in done[loser][1]
    )
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert config["seed"] == results["config"]["seed"]
    history = (out / "history.csv").read_text().splitlines()
    assert sum(line.startswith("epoch") for line in history) == 1


RESUMABLE = [
    "--dataset=omniglot",
    "--filters=16",
    "--meta_batch=8",
    "--queries=5",
    "--eval_queries=5",
    "--iterations=40",
    "--eval_every=20",
    "--checkpoint_every=5",
    "--val_tasks=20",
    "--eval_tasks=40",
    "--curve_tasks=20",
    "--curve_steps=1",
    "--verbose=2",
    "--seed=3",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A run of RESUMABLE from start to end, for the resumed ones."""
    whole = tmp_path_factory.mktemp("whole") / "run"
    script("maml", *RESUMABLE, f"--output_dir={whole}")
    return whole


def start(output_dir, prelude=None):
    """Starts `train.maml` on RESUMABLE in the background; `prelude` is
    Python run first in the child (to plant a fault)."""
    flags = [data_dir_flag(), *RESUMABLE, f"--output_dir={output_dir}"]
    if prelude is None:
        command = [sys.executable, "-m", "train.maml", *flags]
    else:
        code = (
            f"{prelude}\nfrom keras_meta.cli import train\n"
            f"train.main('maml', ['train.maml', *{flags!r}])"
        )
        command = [sys.executable, "-c", code]
    return in_background(command)


def wait_for(condition, process, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(
        f"timed out or exited {process.poll()}: {process.communicate()[1]}"
    )


def assert_same_run(whole, resumed):
    """The resumed run ends with the uninterrupted run's weights, test
    accuracy and per-epoch training history."""
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((resumed / "results.json").read_text())
    assert abs(a["test"]["mean"] - b["test"]["mean"]) < 0.02
    whole_model = keras.models.load_model(whole / "model.keras")
    resumed_model = keras.models.load_model(resumed / "model.keras")
    for u, v in zip(whole_model.learner.weights, resumed_model.learner.weights):
        np.testing.assert_allclose(u.numpy(), v.numpy(), atol=1e-3)
    from keras_meta.plots import read_history

    h, g = (
        read_history(whole / "history.csv"),
        read_history(resumed / "history.csv"),
    )
    assert h["iteration"] == g["iteration"]
    # One line ending throughout, as Keras's CSVLogger writes them.
    text = (resumed / "history.csv").read_bytes()
    assert text.count(b"\n") == text.count(b"\r\n")
    # Each epoch's training averages cover its whole epoch, resumed or not.
    np.testing.assert_allclose(h["loss"], g["loss"], rtol=1e-3)
    np.testing.assert_allclose(h["accuracy"], g["accuracy"], atol=1e-3)


# SIGTERM takes the same path as Ctrl-C: kept out of the default run (time).
@pytest.mark.parametrize(
    "stop",
    [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
)
def test_interrupted_run_resumes_to_the_same_result(
    tmp_path, uninterrupted, stop
):
    """Ctrl-C, or the SIGTERM a scheduler sends before it preempts a job,
    mid-way leaves a checkpoint; --resume ends where an uninterrupted run
    does, with the same history."""
    broken = tmp_path / "broken"
    process = start(broken)
    state = broken / "checkpoint" / "checkpoint.json"
    wait_for(
        lambda: (
            state.exists() and json.loads(state.read_text())["iteration"] >= 25
        ),
        process,
    )
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + stop, stderr[-3000:]
    assert f"Stopped by {stop.name} at iteration" in stderr
    stopped = json.loads(state.read_text())["iteration"]
    assert 25 <= stopped < 40
    assert not (broken / "results.json").exists()

    resumed = script("maml", "--resume", f"--output_dir={broken}")
    assert f"Resuming {broken} at iteration {stopped}" in resumed.stdout
    assert_same_run(uninterrupted, broken)


# Plants a pause in the child: the write of the checkpoint state at
# iteration 15 (its model file already in place) waits forever.
PAUSE_IN_CHECKPOINT = """
import contextlib, pathlib, time
import keras_meta.checkpoints as checkpoints
real = checkpoints.atomic_path
@contextlib.contextmanager
def paused(path, suffix=""):
    with real(path, suffix) as staged:
        yield staged
        text = pathlib.Path(staged).read_text()
        if '"iteration": 15' in text:
            pathlib.Path(path).with_name("PAUSED").write_text("")
            time.sleep(600)
checkpoints.atomic_path = paused
"""


def test_killed_while_writing_a_checkpoint_resumes_from_the_last_good_one(
    tmp_path, uninterrupted
):
    broken = tmp_path / "broken"
    process = start(broken, PAUSE_IN_CHECKPOINT)
    paused = broken / "checkpoint" / "PAUSED"
    wait_for(paused.exists, process)
    process.kill()
    process.communicate(timeout=60)
    files = sorted(os.listdir(broken / "checkpoint"))
    assert "iteration_00000015.keras" in files  # written, not committed
    resumed = script("maml", "--resume", f"--output_dir={broken}")
    assert f"Resuming {broken} at iteration 10" in resumed.stdout
    assert_same_run(uninterrupted, broken)


@pytest.mark.slow
def test_random_kills_then_resumes_end_as_an_uninterrupted_run(
    tmp_path, uninterrupted
):
    """kill -9 at random moments (in training, in a checkpoint write, in
    the final test), each time resumed: the same weights, results and
    history as the run that was never interrupted."""
    rng = np.random.default_rng(11)
    broken = tmp_path / "broken"
    process = start(broken)
    for _ in range(4):
        time.sleep(rng.uniform(8, 25))
        if process.poll() is not None:
            break
        process.kill()
        process.communicate(timeout=60)
        again = ["--resume"]
        if not (broken / "checkpoint" / "checkpoint.json").exists():
            # Killed before its first checkpoint: start it afresh.
            again = [*RESUMABLE, "--overwrite"]
        process = in_background(
            [
                sys.executable,
                "-m",
                "train.maml",
                data_dir_flag(),
                *again,
                f"--output_dir={broken}",
            ]
        )
    _, stderr = process.communicate(timeout=900)
    if not (broken / "results.json").exists():
        script("maml", "--resume", f"--output_dir={broken}")
    assert_same_run(uninterrupted, broken)


# Plants a SIGKILL of the child at one phase after training: the final
# test, the export of the SavedModel, or the write of results.json.
KILL = """
import os, signal
from keras_meta.cli import report, run_folder
from keras_meta.engine import serving
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
"""
KILL_AT = {
    "test": "report.evaluate_protocols = kill",
    "export": "serving.export = kill",
    "report": (
        "write = run_folder.RunFolder.write_json\n"
        "run_folder.RunFolder.write_json = staticmethod(lambda path, value: "
        "kill() if path.name == 'results.json' else write(path, value))"
    ),
}


# The default run kills it writing the report; the other phases are slow.
@pytest.mark.parametrize(
    "phase",
    [
        p if p == "report" else pytest.param(p, marks=pytest.mark.slow)
        for p in KILL_AT
    ],
)
def test_a_run_killed_after_training_finishes_with_resume(
    tmp_path, tiny_maml_run, phase
):
    whole, broken = tiny_maml_run[0], tmp_path / "broken"
    code = (
        KILL + KILL_AT[phase] + "\nfrom keras_meta.cli import train\n"
        f"train.main('maml', ['train.maml', {data_dir_flag()!r}, "
        f"*{[*TINY, f'--output_dir={broken}']!r}])"
    )
    process = in_background([sys.executable, "-c", code])
    process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL
    assert not (broken / "results.json").exists()
    resumed = script("maml", "--resume", f"--output_dir={broken}")
    assert "meta-test accuracy" in resumed.stdout
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((broken / "results.json").read_text())
    assert b["iterations_trained"] == a["iterations_trained"] == 4
    assert b["test"]["mean"] == pytest.approx(a["test"]["mean"], abs=0.02)
    assert tf.saved_model.load(str(broken / "saved_model")).signatures


@pytest.mark.slow  # in-process: tests/test_reliability.py, by default
def test_non_finite_loss_fails_the_run_without_results(tmp_path):
    out = tmp_path / "nan"
    result = script(
        "maml",
        *TINY,
        "--iterations=6",
        "--inner_lr=1e38",
        "--meta_lr=1e30",
        f"--output_dir={out}",
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "became nan" in result.stderr.lower() or "became inf" in (
        result.stderr.lower()
    )
    assert "at iteration" in result.stderr and "learning rate" in result.stderr
    for name in ("results.json", "model.keras", "saved_model"):
        assert not (out / name).exists()
    state = out / "checkpoint" / "checkpoint.json"
    if state.exists():  # whatever was kept holds finite weights
        import keras_meta

        model, _ = keras_meta.callbacks.load_checkpoint(out / "checkpoint")
        for v in model.learner.weights:
            assert np.all(np.isfinite(v.numpy()))


def test_data_problems_of_any_split_stop_the_run_before_it_trains(tmp_path):
    """25 classes of 4 images: 16 train, 4 validation and 5 test classes."""
    rng = np.random.default_rng(0)

    def folder(name, sizes):
        root = tmp_path / name
        for c, size in enumerate(sizes):
            (root / f"c{c:02d}").mkdir(parents=True)
            for i in range(size):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"c{c:02d}" / f"{i}.png")
        return root

    small_test_class = folder("small", [4] * 24 + [1])
    empty_class = folder("empty", [4] * 24 + [0])
    cases = {
        "small test class": (small_test_class, [], "has only 1"),
        "empty class": (empty_class, [], "c24' holds no image"),
        "more ways than validation classes": (
            small_test_class,
            ["--ways=5"],
            "ways=5 is more than the 4 classes",
        ),
    }
    started = {
        name: in_background(
            [
                sys.executable,
                "-m",
                "train.maml",
                f"--dataset={data}",
                "--ways=3",
                "--queries=1",
                "--eval_queries=1",
                "--filters=4",
                *flags,
                f"--output_dir={tmp_path / name}",
            ]
        )
        for name, (data, flags, _) in cases.items()
    }
    for name, process in started.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 2, (name, stderr[-2000:])
        assert cases[name][2] in stderr, (name, stderr[-2000:])
        assert not (tmp_path / name).exists()


def test_a_missing_data_folder_fails_at_once(tmp_path):
    began = time.time()
    result = run_module(
        "train.maml",
        f"--data_dir={tmp_path / 'no_such_folder'}",
        f"--output_dir={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert time.time() - began < 120
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "algorithm, flags",
    [
        ("maml", ["--first_order"]),
        ("anil", []),
        ("reptile", ["--inner_steps=3", "--eval_inner_steps=5"]),
        ("pretrain", ["--batch_size=32", "--eval_inner_steps=10"]),
    ],
)
def test_every_script_end_to_end(tmp_path, algorithm, flags):
    out = tmp_path / algorithm
    script(algorithm, *TINY, *flags, f"--output_dir={out}")
    check_run_folder(out)


@pytest.mark.slow
def test_sinusoid_script_end_to_end(tmp_path):
    out = tmp_path / "sine"
    script(
        "maml", "--preset=maml_sinusoid", *TINY_BUDGET, f"--output_dir={out}"
    )
    check_run_folder(out, metric="loss")


COMPARE_EXTRA = " ".join(
    [*SMALL_OMNIGLOT, *OFTEN, "--batch_size=32", "--eval_inner_steps=2"]
)


def test_evaluate_script_adds_protocols_to_a_finished_run(
    tmp_path, tiny_maml_run
):
    from keras_meta.data import omniglot

    run = tmp_path / "run"
    shutil.copytree(tiny_maml_run[0], run)
    done = run_module(
        "train.evaluate",
        f"--run={run}",
        "--protocol=15_queries,reptile",
        "--eval_tasks=10",
        data_dir_flag(),
    )
    assert "protocol 15_queries" in done.stdout
    results = json.loads((run / "results.json").read_text())
    assert list(results["evaluations"]) == [
        "maml/transductive",  # the run's own, kept
        "15_queries/transductive",
        "reptile/transductive",
        "reptile/non_transductive",
    ]
    assert results["protocol"] == "maml"  # the headline stays
    # The 15-query tasks are the test split's, drawn with the fixed test
    # seed whatever the run's seed: scored here without the script.
    model = keras.models.load_model(run / "model.keras")
    x, y = next(
        iter(
            omniglot(
                "test",
                ways=5,
                shots=1,
                queries=15,
                meta_batch=20,
                seed=2,
                data_dir=data_dir_flag().split("=", 1)[1],
                download=False,
            )
        )
    )
    expected = (model.predict_on_batch(x).argmax(-1) == y.numpy()).mean(1)
    np.testing.assert_allclose(
        results["evaluations"]["15_queries/transductive"]["task_accuracies"],
        expected[:10],
        atol=1e-6,
    )
    again = run_module(
        "train.evaluate", f"--run={run}", "--protocol=reptile", data_dir_flag()
    )
    assert "nothing to do" in again.stdout
    # A run kept as its small files only (its model not committed) is
    # reused for what it reports; testing it anew asks for the model.
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("config.json", "results.json"):
        shutil.copy(run / name, kept / name)
    assert evaluate.evaluate_run(kept, "reptile,maml") == []
    with pytest.raises(UsageError, match="no model.keras"):
        evaluate.evaluate_run(kept, "mamlpp")
    before = (run / "results.json").read_text()
    for flags, message in (
        (["--protocol=paper"], "Unknown protocol 'paper'"),
        ([f"--run={tmp_path}", "--protocol=maml"], "not a finished run"),
    ):
        bad = run_module("train.evaluate", f"--run={run}", *flags, check=False)
        assert bad.returncode == 2 and message in bad.stderr
    assert (run / "results.json").read_text() == before


def test_analyze_script(tmp_path, tiny_maml_run):
    run, out = tiny_maml_run[0], tmp_path / "analysis"
    done = run_module(
        "train.analyze", f"--model={run}", "--tasks=8", f"--output_dir={out}"
    )
    assert "NIL head" in done.stdout
    analysis = json.loads((out / "analysis.json").read_text())
    assert [r["layer"] for r in analysis["similarity"]][-1] == "head"
    assert analysis["freezing"]["1"][-1]["adapted_from"] == "none"
    assert 0.0 <= analysis["nil"]["accuracy"] <= 1.0
    for png in ("analysis_similarity.png", "analysis_freezing.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG"
    # The run's model file names its run as well as its folder does.
    again = run_module(
        "train.analyze",
        f"--model={run / 'model.keras'}",
        "--tasks=4",
        f"--output_dir={tmp_path / 'again'}",
    )
    assert "NIL head" in again.stdout
    missing = run_module("train.analyze", f"--model={tmp_path}", check=False)
    assert missing.returncode == 2 and "no model.keras" in missing.stderr
    # Analysed runs side by side: the same run twice is one method, 2 runs.
    table = run_module(
        "train.analyze",
        f"--side_by_side={out},{out}",
        f"--output_dir={tmp_path / 'side'}",
    )
    assert "| maml | 2 |" in table.stdout
    assert (tmp_path / "side" / "side_by_side.md").exists()
    alone = run_module("train.analyze", f"--side_by_side={out}", check=False)
    assert alone.returncode == 2 and "--output_dir" in alone.stderr


def compare(tmp_path, budget, extra, algorithms, names, *flags):
    """`train.compare` into tmp_path/cmp; checks the report's files and
    that every row and seed was tested on the same tasks."""
    run_module(
        "train.compare",
        f"--budget={budget}",
        f"--algorithms={algorithms}",
        "--eval_tasks=20",
        f"--output_dir={tmp_path / 'cmp'}",
        data_dir_flag(),
        f"--extra={extra}",
        *flags,
        timeout=3000,
    )
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["algorithm"] for r in result["rows"]] == names
    for row in result["rows"]:
        for summary in row["summary"].values():
            assert 0.0 <= summary["min"] <= summary["mean"] <= summary["max"]
    assert (tmp_path / "cmp" / "compare.md").read_text().count("| ") > 30
    for png in ("compare_steps.png", "compare_validation.png"):
        with Image.open(tmp_path / "cmp" / png) as image:
            assert image.format == "PNG"
    configs = [
        json.loads((pathlib.Path(s["run"]) / "config.json").read_text())
        for r in result["rows"]
        for s in r["seeds"]
    ]
    assert len({(c["ways"], c["shots"]) for c in configs}) == 1
    return result


def test_compare_script_on_a_tiny_budget(tmp_path):
    # Pretrain alone (to keep the default suite short), two seeds, two
    # rows: a fresh head, and the NIL head the script adds on its body.
    pretrain = (
        tmp_path,
        2,
        COMPARE_EXTRA,
        "pretrain",
        ["Pretrain (fresh head)", "Pretrain (NIL head)"],
        "--seeds=2",
        "--seed=4",
    )
    result = compare(*pretrain)
    fresh, nil = result["rows"]
    assert [s["seed"] for s in fresh["seeds"]] == [4, 5]
    runs = [pathlib.Path(s["run"]) for s in fresh["seeds"]]
    assert [p.parent.name for p in runs] == ["seed_4", "seed_5"]
    # Each seed's run is tested under --protocol's maml and 15_queries.
    key = "maml/transductive"
    per_seed = [
        json.loads((p / "results.json").read_text())["evaluations"]
        for p in runs
    ]
    assert all({key, "15_queries/transductive"} <= set(e) for e in per_seed)
    # The paired difference of the two rows, from the runs' own per-task
    # scores: the mean over seeds and tasks, and its seed spread.
    fresh_scores = np.array([e[key]["task_accuracies"] for e in per_seed])
    nil_scores = np.array(
        [s["evaluations"][key]["task_accuracies"] for s in nil["seeds"]]
    )
    assert fresh_scores.shape == nil_scores.shape == (2, 20)
    (difference,) = result["differences"][key]
    assert (difference["seeds"], difference["tasks"]) == (2, 20)
    assert difference["mean"] == pytest.approx(
        (fresh_scores - nil_scores).mean()
    )
    assert difference["low"] <= difference["mean"] <= difference["high"]
    assert fresh["summary"][key]["std"] == pytest.approx(
        np.std(fresh_scores.mean(axis=1), ddof=1)
    )
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Pretrain (fresh head) - Pretrain (NIL head)" in report

    # --resume reuses both runs and tests them under a protocol they lack.
    before = (runs[0] / "model.keras").stat().st_mtime
    again = compare(*pretrain, "--resume", "--protocol=reptile")
    assert (runs[0] / "model.keras").stat().st_mtime == before
    for run in runs:
        evaluations = json.loads((run / "results.json").read_text())[
            "evaluations"
        ]
        assert {"reptile/transductive", "reptile/non_transductive"} <= set(
            evaluations
        )
        assert len(evaluations["reptile/transductive"]["task_accuracies"]) == 20
    assert list(again["differences"]) == ["reptile/transductive"]


@pytest.mark.slow
def test_compare_script_on_a_real_budget(tmp_path):
    result = compare(
        tmp_path,
        300,
        "--val_tasks=100",
        "maml,fomaml,anil,reptile,pretrain",
        [
            "MAML",
            "first-order MAML",
            "ANIL",
            "Reptile",
            "Pretrain (fresh head)",
            "Pretrain (NIL head)",
        ],
    )
    rows = {r["algorithm"]: r for r in result["rows"]}
    maml = rows["MAML"]["summary"]["maml/transductive"]
    assert maml["mean"] > 0.6  # chance is 0.2
