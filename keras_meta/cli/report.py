"""The end of a run: test with the papers' protocol, plot, write results.

Nothing here is written for a model whose weights or test score are not
finite: a NaN is never reported as a result.
"""

import math
import resource
import subprocess
import time

import keras
import numpy as np

import keras_meta
from keras_meta import plots
from keras_meta.cli import datasets
from keras_meta.cli.errors import TrainingFailed
from keras_meta.cli.registry import ALGORITHMS
from keras_meta.cli.runtime import REPO


def git_revision():
    """`git describe` of the checkout the code runs from, or None."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_name(config, given=None, preset=None):
    """The run's name: given, the preset's, or derived from the config."""
    if given:
        return given
    if preset:
        return preset
    dataset = config.dataset.rstrip("/").split("/")[-1] or "data"
    if dataset == "sinusoid":
        return f"{config.algorithm}_sinusoid_{config.shots}shot"
    return f"{config.algorithm}_{dataset}_{config.ways}w{config.shots}s"


def select_model(model, config, folder):
    """The model to test: the last one, or (`select=best_val`) the weights
    with the best meta-validation score. Returns `(model, iteration)`."""
    iteration = int(model.optimizer.iterations.numpy())
    if config.select == "best_val" and folder.best_model.exists():
        best = keras.models.load_model(folder.best_model)
        iteration = int(best.optimizer.iterations.numpy())
        model = best
    return model, iteration


def check_finite(model):
    """Raises `TrainingFailed` if any weight is NaN or infinite."""
    for variable in model.learner.weights:
        if not np.all(np.isfinite(variable.numpy())):
            raise TrainingFailed(
                f"The weight {variable.path} is not finite: the model is "
                "broken, so it is not tested, saved or exported."
            )


def steps_curve(model, test, config, folder, name, metric):
    """Test score after 0..`curve_steps` adaptation steps (`curve_tasks`
    tasks each), drawn with the learning curve; returns the
    `FewShotResult`s."""
    steps = list(range(config.curve_steps + 1))
    curve = [
        keras_meta.evaluate_few_shot(
            model, test, config.curve_tasks, inner_steps=k
        )
        for k in steps
    ]
    plots.score_by_steps(
        steps,
        [r.mean for r in curve],
        [r.ci95 for r in curve],
        folder.path / "accuracy_vs_steps.png",
        metric=metric,
        title=f"{name}: test {metric} against steps",
    )
    history = plots.read_history(folder.history)
    if "iteration" in history:
        plots.learning_curve(
            history,
            history["iteration"],
            folder.path / "learning_curve.png",
            metric="accuracy" if metric == "accuracy" else "loss",
            title=name,
        )
    return curve


def evaluate_and_write(model, config, folder, name, wall_start, training):
    """Tests `model` on `eval_tasks` meta-test tasks and on `curve_tasks`
    tasks for 0..`curve_steps` steps, then writes the model, SavedModel,
    plots and `results.json`. Returns the results dict."""
    model, selected = select_model(model, config, folder)
    check_finite(model)
    test = datasets.make_data(config, "test")
    result = keras_meta.evaluate_few_shot(model, test, config.eval_tasks)
    if not math.isfinite(result.mean):
        raise TrainingFailed(
            f"The meta-test {result.metric} is {result.mean}: not a result."
        )
    ways = None if config.dataset == "sinusoid" else config.ways
    print(f"meta-test {result.describe(ways, config.shots)}")

    curve = steps_curve(model, test, config, folder, name, result.metric)
    model.save(folder.model_file)
    model.export(folder.saved_model)
    results = {
        "run": name,
        "algorithm": config.algorithm,
        "config": config.as_dict(),
        "git_revision": git_revision(),
        "test": {
            **result.as_dict(),
            "summary": result.describe(ways, config.shots),
        },
        "test_by_steps": [
            {"steps": k, "mean": r.mean, "ci95": r.ci95}
            for k, r in enumerate(curve)
        ],
        "bn_mode": result.bn_mode,
        "num_test_tasks": result.num_tasks,
        "selected_iteration": selected,
        "wall_time_seconds": time.time() - wall_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        **training,
    }
    if ALGORITHMS[config.algorithm].episodic:
        results["tasks_seen"] = training["iterations_trained"] * (
            config.meta_batch
        )
        results["tasks_per_second"] = results["tasks_seen"] / max(
            training["train_seconds"], 1e-9
        )
    else:
        results["examples_seen"] = (
            training["iterations_trained"] * config.batch_size
        )
    folder.write_json(folder.results, results)
    print(f"Wrote {folder.path}")
    return results
