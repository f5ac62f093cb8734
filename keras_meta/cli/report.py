"""The end of a run: test with the papers' protocol, plot, write results.

Nothing here is written for a model whose weights or test score are not
finite: a NaN is never reported as a result.
"""

import math
import pathlib
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

# The checkout this code runs from, when it runs from one.
REPO = pathlib.Path(__file__).resolve().parents[2]


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


def score_key(metric):
    """The results.json key of per-task scores."""
    return "task_accuracies" if metric == "accuracy" else "task_losses"


def evaluation_record(result, config):
    """One test result as results.json keeps it: the summary, its line,
    and every task's score in the order of the protocol's test tasks."""
    ways = None if config.dataset == "sinusoid" else config.ways
    return {
        **result.as_dict(),
        "summary": result.describe(ways, config.shots),
        score_key(result.metric): [
            float(f"{v:.6g}") for v in result.task_scores
        ],
        "git_revision": git_revision(),
    }


def evaluate_protocols(model, config, protocols=None, num_tasks=None):
    """Tests `model` under each protocol (default: the run's) and each of
    its batch-norm modes, on the protocol's own test tasks. Returns
    `{"<protocol>/<bn mode>": record}`, the headline first; prints each
    line. Raises `TrainingFailed` on a score that is not finite."""
    records = {}
    for protocol in protocols or config.test_protocols():
        test = datasets.test_data(config, protocol)
        results = keras_meta.evaluation.evaluate_protocol(
            model, test, protocol, num_tasks
        )
        for result in results:
            if not math.isfinite(result.mean):
                raise TrainingFailed(
                    f"The meta-test {result.metric} under protocol "
                    f"{protocol.name} is {result.mean}: not a result."
                )
            record = evaluation_record(result, config)
            print(f"meta-test {record['summary']}", flush=True)
            records[f"{protocol.name}/{result.bn_mode}"] = record
    return records


def headline(records):
    """`results.json`'s headline keys from the first evaluation."""
    key, first = next(iter(records.items()))
    scores = score_key(first["metric"])
    return {
        "protocol": first["protocol"],
        "test": {k: v for k, v in first.items() if k != scores},
        scores: first[scores],
        "bn_mode": first["bn_mode"],
        "num_test_tasks": first["num_tasks"],
    }


def steps_curve(model, config, folder, name, metric):
    """Test score after 0..`curve_steps` adaptation steps (`curve_tasks`
    tasks each, the headline protocol's), drawn with the learning curve;
    returns the `FewShotResult`s."""
    protocol = config.test_protocols()[0]
    test = datasets.test_data(config, protocol)
    steps = list(range(config.curve_steps + 1))
    curve = [
        keras_meta.evaluate_few_shot(
            model,
            test,
            config.curve_tasks,
            inner_steps=k,
            bn_mode=protocol.bn_modes[0],
            protocol=protocol,
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
    """Tests `model` under the run's protocols and on `curve_tasks` tasks
    for 0..`curve_steps` steps, then writes the model, SavedModel, plots
    and `results.json`. Returns the results dict."""
    model, selected = select_model(model, config, folder)
    check_finite(model)
    records = evaluate_protocols(model, config, num_tasks=config.eval_tasks)
    top = headline(records)
    curve = steps_curve(model, config, folder, name, top["test"]["metric"])
    model.save(folder.model_file)
    prepared = datasets.preprocessing(config)
    model.export(
        folder.saved_model,
        metadata={
            "run": name,
            "shots": config.shots,
            "preprocessing": None if prepared is None else prepared.as_dict(),
        },
    )
    results = {
        "run": name,
        "algorithm": config.algorithm,
        "config": config.as_dict(),
        "git_revision": git_revision(),
        **top,
        "evaluations": records,
        "test_by_steps": [
            {"steps": k, "mean": r.mean, "ci95": r.ci95}
            for k, r in enumerate(curve)
        ],
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
