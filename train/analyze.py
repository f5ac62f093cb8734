"""Rapid learning or feature reuse? Analyses a trained run.

    python -m train.analyze --model saved_models/<run> [--tasks 100]

Prints and writes (to the run folder, or --output_dir) a table of, per
layer, the CKA and SVCCA similarity of the query activations before and
after the inner loop; test accuracy when the inner loop adapts only layers
i..L; and the accuracy of the NIL head (no inner loop). Files:
analysis.json, analysis_similarity.png, analysis_freezing.png.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A run folder written by train.<algorithm>.")
flags.DEFINE_integer("tasks", 100, "Meta-test tasks to analyse.")
flags.DEFINE_string(
    "analysis_dir", None, "Where to write (default: the run folder)."
)
flags.DEFINE_string(
    "tfds_dir", None, "TFDS data folder (default: the run's data_dir)."
)


def analyze(run_dir, tasks, out_dir, data_dir=None):
    """Runs the three analyses; returns the result dict (also written)."""
    import keras
    import tensorflow as tf

    import keras_meta
    from keras_meta import plots
    from keras_meta.atomic import atomic_path
    from train import datasets

    tf.get_logger().setLevel("ERROR")
    config = json.loads((run_dir / "config.json").read_text())
    if data_dir:
        config["data_dir"] = data_dir
    if config["dataset"] == "sinusoid":
        raise ValueError("The analyses need a classification run.")
    model = keras.models.load_model(run_dir / "model.keras")

    # One stream, read from its start by each analysis: the same tasks.
    test = datasets.make_data(config, "test")
    similarity = keras_meta.analysis.representation_similarity(
        model, test, tasks
    )
    freezing = keras_meta.analysis.freezing_ablation(model, test, tasks)
    nil = keras_meta.analysis.nil_accuracy(model, test, tasks)
    result = {
        "run": str(run_dir),
        "algorithm": config["algorithm"],
        "tasks": tasks,
        "inner_steps": model.eval_inner_steps,
        "similarity": similarity,
        "freezing": freezing,
        "nil": nil,
    }
    print(
        f"{'layer':<14} {'CKA':>6} {'CCA':>6}   (query activations, "
        f"before vs after {model.eval_inner_steps} inner steps, "
        f"{tasks} tasks)"
    )
    for row in similarity:
        print(f"{row['layer']:<14} {row['cka']:6.3f} {row['cca']:6.3f}")
    print(f"\n{'inner loop adapts':<20} accuracy")
    for row in freezing:
        what = (
            "nothing"
            if row["adapted_from"] == "none"
            else f"{row['adapted_from']} .."
        )
        print(
            f"{what:<20} {100 * row['accuracy']:5.1f}% +- "
            f"{100 * row['ci95']:.1f}%"
        )
    print(
        f"{'NIL head':<20} {100 * nil['accuracy']:5.1f}% +- "
        f"{100 * nil['ci95']:.1f}%"
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(out_dir / "analysis.json") as staged,
        open(staged, "w") as f,
    ):
        json.dump(result, f, indent=2)
    names = [row["layer"] for row in similarity]
    plots.bar_chart(
        names,
        None,
        out_dir / "analysis_similarity.png",
        ylabel="similarity before vs after adaptation",
        title="Representation similarity (1 = unchanged)",
        series={
            "CKA": [r["cka"] for r in similarity],
            "CCA": [r["cca"] for r in similarity],
        },
    )
    plots.bar_chart(
        [r["adapted_from"] for r in freezing] + ["NIL"],
        [100 * r["accuracy"] for r in freezing] + [100 * nil["accuracy"]],
        out_dir / "analysis_freezing.png",
        errors=[100 * r["ci95"] for r in freezing] + [100 * nil["ci95"]],
        ylabel="test accuracy (%)",
        title="Inner loop adapts layers from ... (and no inner loop)",
    )
    print(f"\nWrote {out_dir}")
    return result


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1 or not FLAGS.model:
        print(
            "error: give --model=saved_models/<run> (and no other arguments)",
            file=sys.stderr,
        )
        return 2
    run_dir = pathlib.Path(FLAGS.model)
    if not (run_dir / "model.keras").exists():
        print(
            f"error: {run_dir} holds no model.keras: give a finished run "
            "folder",
            file=sys.stderr,
        )
        return 2
    out_dir = pathlib.Path(FLAGS.analysis_dir or run_dir)
    try:
        analyze(run_dir, FLAGS.tasks, out_dir, FLAGS.tfds_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
