"""MAML, first-order MAML, ANIL, Reptile and pre-training, side by side.

    python -m train.compare --dataset=omniglot --ways=5 --shots=1 --budget=1000

Trains each algorithm with its script (`train.<algorithm>`) under the same
budget of meta-iterations (Pretrain: as many batches), evaluates each on the
same meta-test tasks (the runs share --seed, so they draw the same tasks),
adds the NIL head on the pre-trained body, and writes to --output_dir
(default saved_models/compare_<dataset>_<N>w<K>s): compare.json, compare.md
(the table) and compare_steps.png (test accuracy against adaptation steps).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import pathlib  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "omniglot", "Dataset, as for train.maml.")
flags.DEFINE_integer("ways", 5, "N.")
flags.DEFINE_integer("shots", 1, "K.")
flags.DEFINE_integer("budget", 1000, "Meta-iterations for every algorithm.")
flags.DEFINE_integer("eval_tasks", 600, "Meta-test tasks.")
flags.DEFINE_integer("seed", 0, "Seed shared by all runs (same test tasks).")
flags.DEFINE_string("output_dir", None, "Where to write.")
flags.DEFINE_string("data_dir", None, "TFDS data folder.")
flags.DEFINE_boolean("overwrite", False, "Replace earlier runs.")
flags.DEFINE_string(
    "extra", "", "More flags for every training script, e.g. '--filters=32'."
)

VARIANTS = (
    ("MAML", "maml", []),
    ("first-order MAML", "maml", ["--first_order"]),
    ("ANIL", "anil", []),
    ("Reptile", "reptile", []),
    ("Pretrain (fresh head)", "pretrain", []),
)


def train_all(out):
    results = {}
    for name, algorithm, flags_ in VARIANTS:
        run_dir = out / name.split(" ")[0].lower().replace("-", "_")
        if name.startswith("first"):
            run_dir = out / "fomaml"
        command = [
            sys.executable,
            "-m",
            f"train.{algorithm}",
            f"--dataset={FLAGS.dataset}",
            f"--ways={FLAGS.ways}",
            f"--shots={FLAGS.shots}",
            f"--iterations={FLAGS.budget}",
            f"--eval_tasks={FLAGS.eval_tasks}",
            f"--seed={FLAGS.seed}",
            f"--output_dir={run_dir}",
            "--verbose=2",
            *flags_,
            *shlex.split(FLAGS.extra),
        ]
        if FLAGS.data_dir:
            command.append(f"--data_dir={FLAGS.data_dir}")
        if FLAGS.overwrite:
            command.append("--overwrite")
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, check=False)
        if done.returncode:
            raise RuntimeError(f"{name} failed (exit {done.returncode}).")
        results[name] = (
            run_dir,
            json.loads((run_dir / "results.json").read_text()),
        )
    return results


def nil_row(run_dir, config):
    import keras

    import keras_meta
    from train import datasets

    model = keras.models.load_model(run_dir / "model.keras")
    return keras_meta.analysis.nil_accuracy(
        model, datasets.make_data(config, "test"), FLAGS.eval_tasks
    )


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    from keras_meta import plots
    from keras_meta.atomic import atomic_path

    out = pathlib.Path(
        FLAGS.output_dir
        or f"saved_models/compare_{FLAGS.dataset}_{FLAGS.ways}w{FLAGS.shots}s"
    )
    try:
        runs = train_all(out)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for name, (run_dir, result) in runs.items():
        rows.append(
            {
                "algorithm": name,
                "accuracy": result["test"]["mean"],
                "ci95": result["test"]["ci95"],
                "train_seconds": result.get("train_seconds"),
                "tasks_per_second": result.get("tasks_per_second"),
                "peak_rss_mib": result.get("peak_rss_mib"),
                "test_by_steps": [p["mean"] for p in result["test_by_steps"]],
                "run": str(run_dir),
            }
        )
    pretrain_dir, pretrain = runs["Pretrain (fresh head)"]
    nil = nil_row(pretrain_dir, pretrain["config"])
    rows.append(
        {
            "algorithm": "Pretrain (NIL head)",
            "accuracy": nil["accuracy"],
            "ci95": nil["ci95"],
            "train_seconds": rows[-1]["train_seconds"],
            "tasks_per_second": None,
            "peak_rss_mib": rows[-1]["peak_rss_mib"],
            "test_by_steps": None,
            "run": str(pretrain_dir),
        }
    )

    def cell(value, fmt):
        return "" if value is None else format(value, fmt)

    lines = [
        f"{FLAGS.dataset} {FLAGS.ways}-way {FLAGS.shots}-shot, "
        f"{FLAGS.budget} meta-iterations each, {FLAGS.eval_tasks} meta-test "
        "tasks (95% CI), bn=transductive",
        "",
        "| algorithm | accuracy | 95% CI | training time (s) | tasks / s | "
        "peak memory (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['algorithm']} | {100 * r['accuracy']:.1f}% | "
            f"+- {100 * r['ci95']:.1f}% | {cell(r['train_seconds'], '.0f')} "
            f"| {cell(r['tasks_per_second'], '.1f')} | "
            f"{cell(r['peak_rss_mib'], '.0f')} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    with atomic_path(out / "compare.md") as staged, open(staged, "w") as f:
        f.write(table + "\n")
    with atomic_path(out / "compare.json") as staged, open(staged, "w") as f:
        json.dump(
            {
                "flags": {
                    k: FLAGS[k].value
                    for k in (
                        "dataset",
                        "ways",
                        "shots",
                        "budget",
                        "eval_tasks",
                        "seed",
                        "extra",
                    )
                },
                "rows": rows,
            },
            f,
            indent=2,
        )
    plots.curves(
        list(range(11)),
        {
            r["algorithm"]: [100 * m for m in r["test_by_steps"]]
            for r in rows
            if r["test_by_steps"]
        },
        out / "compare_steps.png",
        title=f"{FLAGS.ways}-way {FLAGS.shots}-shot, {FLAGS.budget} "
        "iterations each",
    )
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
