"""Rapid learning or feature reuse? `keras-meta analyze` (or `python -m
train.analyze`) asks it of a trained run, in the form of Raghu et al.
(ICLR 2020):

    python -m train.analyze --model=saved_models/<run> [--tasks=100]

- per layer, CKA and SVCCA of the query activations before and after the
  inner loop (their Figure 2);
- test accuracy when the inner loop adapts only layers i..L, at each of
  `--steps` adaptation steps (their Table 1);
- the NIL head: no inner loop, cosine similarity to the support features
  (their Table 4);
- head-only accuracy for each of `--head_steps` x `--head_lrs`, and with
  `--snapshots` along the run (from `--keep_snapshots`);
- the update directions at the learned initialisation (norms, cosines).

Every model trained here takes it; for ProtoNet and Proto-MAML the head is
the task's prototype classifier (adapted by the inner loop as Proto-MAML's
is), the NIL head reads the embedding, and there are no update directions.

Writes analysis.json and PNG charts to the run folder (or --output_dir).
`--side_by_side=RUN,RUN,... --output_dir=DIR` puts analysed runs of
several algorithms in one table (`keras_meta.cli.side_by_side`).
"""

import dataclasses
import json
import pathlib
import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A run folder written by train.<algorithm>.")
flags.DEFINE_integer("tasks", 100, "Meta-test tasks to analyse.", lower_bound=2)
flags.DEFINE_string(
    "output_dir", None, "Where to write (default: the run folder)."
)
flags.DEFINE_string(
    "data_dir", None, "TFDS data folder (default: the run's data_dir)."
)
flags.DEFINE_list(
    "steps",
    [],
    "Adaptation steps for the freezing ablation (default: the model's "
    "eval_inner_steps), e.g. 3,10,30.",
)
flags.DEFINE_list("head_steps", [], "Steps of the head-only sweep.")
flags.DEFINE_list("head_lrs", [], "Step sizes of the head-only sweep.")
flags.DEFINE_boolean(
    "snapshots",
    False,
    "Head-only and full adaptation accuracy of every snapshots/*.keras.",
)
flags.DEFINE_integer(
    "directions_steps", 2, "Inner steps of the update directions (0: skip)."
)
flags.DEFINE_list(
    "side_by_side",
    [],
    "Analysed run folders to put side by side (instead of --model): one "
    "table and two charts in --output_dir, a row per algorithm.",
)


def _numbers(values, kind):
    try:
        return [kind(v) for v in values]
    except ValueError as e:
        raise ValueError(f"not a list of {kind.__name__}s: {values}") from e


def freezing_rows(model, test, tasks, steps_list):
    import keras_meta

    return {
        str(k): keras_meta.analysis.freezing_ablation(model, test, tasks, k)
        for k in steps_list
    }


def snapshot_rows(run_dir, config, test, tasks):
    """Head-only and full accuracy of each snapshot, by iteration."""
    import keras

    import keras_meta

    rows = []
    for path in sorted((run_dir / "snapshots").glob("epoch_*.keras")):
        epoch = int(path.stem.split("_")[1])
        model = keras.models.load_model(path)
        head = keras_meta.analysis.head_only_accuracy(model, test, tasks)[0]
        full = keras_meta.evaluate_few_shot(model, test, tasks)
        rows.append(
            {
                "iteration": int(model.optimizer.iterations.numpy()),
                "epoch": epoch,
                "head_only": head["accuracy"],
                "head_only_ci95": head["ci95"],
                "full": full.mean,
                "full_ci95": full.ci95,
            }
        )
    return rows


def print_report(result):
    steps = result["inner_steps"]
    print(
        f"{'layer':<14} {'CKA':>6} {'CCA':>6}   (query activations before "
        f"vs after {steps} inner steps, {result['tasks']} tasks)"
    )
    for row in result["similarity"]:
        print(f"{row['layer']:<14} {row['cka']:6.3f} {row['cca']:6.3f}")
    for k, rows in result["freezing"].items():
        print(f"\n{'frozen layers':<16} accuracy ({k} adaptation steps)")
        for row in rows:
            frozen = row["frozen"]
            what = "none" if frozen == 0 else f"1..{frozen}"
            if row["adapted_from"] == "none":
                what = "all (no inner loop)"
            print(
                f"{what:<20} {100 * row['accuracy']:5.1f}% +- "
                f"{100 * row['ci95']:.1f}%"
            )
    nil = result["nil"]
    print(
        f"{'NIL head':<20} {100 * nil['accuracy']:5.1f}% +- "
        f"{100 * nil['ci95']:.1f}%"
    )
    if result["head_only"]:
        print(f"\n{'head only: steps':<18} {'step size':>9}  accuracy")
        for row in result["head_only"]:
            print(
                f"{row['steps']:<18} {row['learning_rate']:9g}  "
                f"{100 * row['accuracy']:5.1f}% +- {100 * row['ci95']:.1f}%"
            )
    if result["snapshots"]:
        print(f"\n{'iteration':<10} {'head only':>10} {'all layers':>11}")
        for row in result["snapshots"]:
            print(
                f"{row['iteration']:<10} {100 * row['head_only']:9.1f}% "
                f"{100 * row['full']:10.1f}%"
            )
    directions = result["directions"]
    if directions:
        print(
            f"\nupdate directions ({directions['steps']} steps of "
            f"{directions['learning_rate']:g}, {directions['num_tasks']} "
            "tasks): norm"
        )
        for name, v in directions["norms"].items():
            print(f"  {name:<18} {v['mean']:.4g} +- {v['ci95']:.2g}")
        print("  cosines:")
        for pair, v in directions["cosines"].items():
            print(f"  {pair:<34} {v['mean']:+.3f} +- {v['ci95']:.3f}")


def write_plots(result, out_dir):
    from keras_meta import plots

    similarity = result["similarity"]
    plots.bar_chart(
        [row["layer"] for row in similarity],
        None,
        out_dir / "analysis_similarity.png",
        ylabel="similarity before vs after adaptation",
        title="Representation similarity (1 = unchanged)",
        series={
            "CKA": [r["cka"] for r in similarity],
            "CCA": [r["cca"] for r in similarity],
        },
    )
    nil = result["nil"]
    plots.bar_chart(
        [
            f"{r['frozen']} frozen"
            for r in next(iter(result["freezing"].values()))
        ]
        + ["NIL"],
        None,
        out_dir / "analysis_freezing.png",
        ylabel="test accuracy (%)",
        title="Inner loop with the first layers frozen (and NIL)",
        series={
            f"{k} steps": [100 * r["accuracy"] for r in rows]
            + [100 * nil["accuracy"]]
            for k, rows in result["freezing"].items()
        },
    )
    if result["snapshots"]:
        rows = result["snapshots"]
        plots.lines(
            {
                "head only": (
                    [r["iteration"] for r in rows],
                    [100 * r["head_only"] for r in rows],
                ),
                "all layers": (
                    [r["iteration"] for r in rows],
                    [100 * r["full"] for r in rows],
                ),
            },
            out_dir / "analysis_snapshots.png",
            xlabel="meta-training iteration",
            ylabel="test accuracy (%)",
            title=f"Adapting the head alone vs everything "
            f"({result['inner_steps']} steps)",
        )


def analyze(run_dir, out_dir):
    """Runs every analysis of a run folder; returns the result dict (also
    written as analysis.json)."""
    import keras
    import tensorflow as tf

    import keras_meta
    from keras_meta.cli import datasets
    from keras_meta.cli.run_config import RunConfig
    from keras_meta.cli.run_folder import RunFolder

    tf.get_logger().setLevel("ERROR")
    config = RunConfig.from_dict(
        json.loads((run_dir / "config.json").read_text())
    )
    if FLAGS.data_dir:
        config = dataclasses.replace(config, data_dir=FLAGS.data_dir)
    if config.dataset == "sinusoid":
        raise ValueError("The analyses need a classification run.")
    model = keras.models.load_model(run_dir / "model.keras")
    # The update directions are those of a classifier's loss; ProtoNet's
    # and Proto-MAML's head is made per task from the prototypes.
    directions_steps = FLAGS.directions_steps
    if directions_steps and keras_meta.analysis.has_prototype_head(model):
        print(
            f"{type(model).__name__}: no update directions (its head is the "
            "task's prototypes, not a meta-learned layer)."
        )
        directions_steps = 0
    tasks = FLAGS.tasks
    # One stream, read from its start by each analysis: the same tasks.
    test = datasets.make_data(config, "test")
    steps = _numbers(FLAGS.steps, int) or [model.eval_inner_steps]
    head_steps = _numbers(FLAGS.head_steps, int)
    head_lrs = _numbers(FLAGS.head_lrs, float)
    result = {
        "run": str(run_dir),
        "algorithm": config.algorithm,
        "tasks": tasks,
        "inner_steps": model.eval_inner_steps,
        "inner_lr": model.inner_lr,
        "similarity": keras_meta.analysis.representation_similarity(
            model, test, tasks
        ),
        "freezing": freezing_rows(model, test, tasks, steps),
        "nil": keras_meta.analysis.nil_accuracy(model, test, tasks),
        "head_only": (
            keras_meta.analysis.head_only_accuracy(
                model, test, tasks, head_steps or [None], head_lrs or [None]
            )
            if head_steps or head_lrs
            else []
        ),
        "snapshots": (
            snapshot_rows(run_dir, config, test, tasks)
            if FLAGS.snapshots
            else []
        ),
        "directions": (
            keras_meta.analysis.update_directions(
                model, test, tasks, directions_steps
            )
            if directions_steps
            else None
        ),
    }
    print_report(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    RunFolder.write_json(out_dir / "analysis.json", result)
    write_plots(result, out_dir)
    print(f"\nWrote {out_dir}")
    return result


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    if FLAGS.side_by_side:
        return side_by_side(argv)
    if len(argv) > 1 or not FLAGS.model:
        print(
            "error: give --model=saved_models/<run> (and no other arguments)",
            file=sys.stderr,
        )
        return 2
    run_dir = pathlib.Path(FLAGS.model)
    if run_dir.name == "model.keras" and run_dir.is_file():
        run_dir = run_dir.parent  # the run's model file names its run
    if not (run_dir / "model.keras").exists():
        print(
            f"error: {run_dir} holds no model.keras: give a finished run "
            "folder",
            file=sys.stderr,
        )
        return 2
    try:
        analyze(run_dir, pathlib.Path(FLAGS.output_dir or run_dir))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def side_by_side(argv):
    from keras_meta.cli import side_by_side

    if len(argv) > 1 or FLAGS.model or not FLAGS.output_dir:
        print(
            "error: --side_by_side=RUN,RUN,... takes --output_dir and no "
            "--model",
            file=sys.stderr,
        )
        return 2
    try:
        print(side_by_side.write(FLAGS.side_by_side, FLAGS.output_dir))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {FLAGS.output_dir}")
    return 0


def run(argv=None):
    """Entry point (`python -m train.analyze`, `keras-meta analyze`)."""
    from keras_meta.cli.flags import run_app

    run_app(main, argv)
