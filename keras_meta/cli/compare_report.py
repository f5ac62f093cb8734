"""The report of `train.compare`: each method over its seeds, the paired
differences between methods, and figures (`compare.md`, `compare.json`,
`compare_validation.png`, `compare_steps.png`, `compare_differences.png`).
"""

import itertools

import numpy as np

from keras_meta import plots, protocols, statistics
from keras_meta.cli import presets
from keras_meta.cli.run_folder import RunFolder

NIL_ROW = "Pretrain (NIL head)"


def nil_evaluation(run_dir, config, protocol, num_tasks):
    """The NIL head (no inner loop) on a run's final model, on the
    protocol's test tasks: an evaluation record with per-task scores."""
    import keras

    import keras_meta
    from keras_meta.cli import datasets
    from keras_meta.cli.run_config import RunConfig

    config = RunConfig.from_dict(config)
    model = keras.models.load_model(run_dir / "model.keras")
    nil = keras_meta.analysis.nil_accuracy(
        model,
        datasets.test_data(config, protocol),
        num_tasks or protocol.num_tasks,
    )
    return {
        "mean": nil["accuracy"],
        "ci95": nil["ci95"],
        "num_tasks": nil["num_tasks"],
        "inner_steps": 0,
        "task_accuracies": nil["task_accuracies"],
    }


def seed_record(seed, run_dir, result):
    """What the report keeps of one row's run with one seed."""
    return {
        "seed": seed,
        "run": str(run_dir),
        "train_seconds": result["train_seconds"],
        "iterations": result["iterations_trained"],
        "selected_iteration": result.get("selected_iteration"),
        "tasks_seen": result.get("tasks_seen"),
        "examples_seen": result.get("examples_seen"),
        "peak_rss_mib": result.get("peak_rss_mib"),
        "test_by_steps": [p["mean"] for p in result["test_by_steps"]],
        "evaluations": result.get("evaluations", {}),
        "git_revision": result.get("git_revision"),
    }


def make_rows(runs, variants, settings):
    """One row per method (`{key: {seed: (run folder, results, preset)}}`),
    and the NIL head on each Pretrain run's body."""
    rows = []
    for key, by_seed in runs.items():
        preset = next(iter(by_seed.values()))[2]
        own = presets.PRESETS[preset] if preset else None
        rows.append(
            {
                "key": key,
                "algorithm": variants[key].name,
                "preset": preset,
                "paper": own["paper"]
                if own and not variants[key].flags
                else None,
                "paper_protocol": own["protocol"] if own else None,
                "seeds": [
                    seed_record(seed, run_dir, result)
                    for seed, (run_dir, result, _) in sorted(by_seed.items())
                ],
            }
        )
    if "pretrain" in runs:
        pretrain = next(r for r in rows if r["key"] == "pretrain")
        seeds = []
        for record, (run_dir, result, _) in zip(
            pretrain["seeds"],
            [runs["pretrain"][s] for s in sorted(runs["pretrain"])],
        ):
            evaluations = {
                f"{p.name}/{p.bn_modes[0]}": nil_evaluation(
                    run_dir, result["config"], p, settings["eval_tasks"]
                )
                for p in protocols.parse(settings["protocol"])
            }
            seeds.append(
                {**record, "evaluations": evaluations, "test_by_steps": None}
            )
        rows.append(
            {
                **pretrain,
                "key": "pretrain_nil",
                "algorithm": NIL_ROW,
                "paper": None,
                "paper_protocol": None,
                "seeds": seeds,
            }
        )
    return rows


def scores(row, key):
    """`[seeds, tasks]` per-task scores of a row under evaluation `key`
    (`"<protocol>/<bn mode>"`), or None if a seed lacks it."""
    per_seed = []
    for record in row["seeds"]:
        evaluation = record["evaluations"].get(key)
        if evaluation is None:
            return None
        per_seed.append(evaluation["task_accuracies"])
    if len({len(s) for s in per_seed}) != 1:
        return None
    return np.asarray(per_seed, np.float64)


def summarise(rows):
    """Adds each row's `summary`: `{evaluation key: seed spread}`."""
    for row in rows:
        keys = set.intersection(*[set(r["evaluations"]) for r in row["seeds"]])
        row["summary"] = {
            key: statistics.seed_spread(
                [r["evaluations"][key]["mean"] for r in row["seeds"]]
            ).as_dict()
            for key in sorted(keys)
        }
    return rows


def differences(rows, protocol_names):
    """Every pair of rows' paired difference under each protocol's headline
    batch-norm mode: `{evaluation key: [difference dicts]}`."""
    found = {}
    for protocol in protocols.parse(protocol_names):
        key = f"{protocol.name}/{protocol.bn_modes[0]}"
        pairs = []
        for a, b in itertools.combinations(rows, 2):
            sa, sb = scores(a, key), scores(b, key)
            if sa is None or sb is None or sa.shape != sb.shape:
                continue
            difference = statistics.paired_difference(sa, sb)
            pairs.append(
                {
                    "a": a["algorithm"],
                    "b": b["algorithm"],
                    **difference.as_dict(),
                    "verdict": difference.verdict(
                        a["algorithm"], b["algorithm"]
                    ),
                    "finding": difference.finding(
                        a["algorithm"], b["algorithm"]
                    ),
                }
            )
        found[key] = pairs
    return found


def _spread(summary, key):
    if key not in summary:
        return ""
    s = summary[key]
    if s["seeds"] == 1:
        return f"{100 * s['mean']:.1f}%"
    return (
        f"{100 * s['mean']:.1f}% ({100 * s['std']:.1f}; "
        f"{100 * s['min']:.1f}-{100 * s['max']:.1f})"
    )


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def table(rows, found, settings):
    """The Markdown of `compare.md`."""
    compared = protocols.parse(settings["protocol"])
    keys = [f"{p.name}/{p.bn_modes[0]}" for p in compared]
    seeds = settings["seed_list"]
    budget = (
        f"{settings['budget']} meta-iterations each"
        if settings["budget"]
        else f"{settings['minutes']:g} minutes of training each"
    )
    lines = [
        f"# {settings['dataset']} {settings['ways']}-way "
        f"{settings['shots']}-shot: {budget}, {len(seeds)} training "
        f"seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})",
        "",
        "Each row: its preset's settings, the weights with the best "
        "meta-validation score, tested on the same test tasks for every "
        "row and seed. Protocols:",
        "",
    ]
    for p in compared:
        tasks = settings["eval_tasks"]
        here = f" ({tasks} tasks here)" if tasks else ""
        lines.append(f"- {p.describe(settings['shots'])}{here}")
    lines += [
        "",
        "## Test accuracy: mean over seeds (between-seed std; range)",
        "",
        "| method | "
        + " | ".join(f"{k}" for k in keys)
        + " | own paper's protocol | paper | test steps | training (s) "
        "| iterations (selected) |",
        "| --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for row in rows:
        own = row["paper_protocol"]
        own_cells = []
        if own:
            for mode in protocols.get(own).bn_modes:
                key = f"{own}/{mode}"
                own_cells.append(f"{key}: {_spread(row['summary'], key)}")
        first = row["seeds"][0]["evaluations"]
        steps = next((first[k]["inner_steps"] for k in keys if k in first), "")
        iterations = _mean([s["iterations"] for s in row["seeds"]])
        selected = _mean([s["selected_iteration"] for s in row["seeds"]])
        train_seconds = _mean([s["train_seconds"] for s in row["seeds"]])
        lines.append(
            f"| {row['algorithm']} | "
            + " | ".join(_spread(row["summary"], k) for k in keys)
            + f" | {'; '.join(own_cells)} | "
            + ("" if row["paper"] is None else f"{row['paper']}%")
            + f" | {steps} | "
            + ("" if train_seconds is None else f"{train_seconds:.0f}")
            + " | "
            + ("" if iterations is None else f"{iterations:.0f}")
            + ("" if selected is None else f" ({selected:.0f})")
            + " |"
        )
    for key, pairs in found.items():
        if not pairs:
            continue
        lines += [
            "",
            f"## Paired differences under {key} ({pairs[0]['seeds']} seeds x "
            f"{pairs[0]['tasks']} tasks, 95% intervals)",
            "",
            "| A - B | difference (points) | 95% interval | verdict |",
            "| --- | ---: | ---: | --- |",
        ]
        for d in pairs:
            lines.append(
                f"| {d['a']} - {d['b']} | {100 * d['mean']:+.1f} | "
                f"{100 * d['low']:+.1f} to {100 * d['high']:+.1f} | "
                f"{d['verdict']} |"
            )
    if len(seeds) == 1:
        lines += [
            "",
            "One training seed: the intervals cover the test tasks only, not "
            "the variation between training runs; pass --seeds=3 or more "
            "before reading a difference as a finding.",
        ]
    return "\n".join(lines)


def validation_curves(rows):
    """`{name: [(train seconds, val accuracy %), ...]}`, one per seed."""
    curves = {}
    for row in rows:
        if row["algorithm"] == NIL_ROW:
            continue
        for record in row["seeds"]:
            history = plots.read_history(f"{record['run']}/history.csv")
            if "train_seconds" in history and "val_accuracy" in history:
                curves.setdefault(row["algorithm"], []).append(
                    (
                        history["train_seconds"],
                        [100 * v for v in history["val_accuracy"]],
                    )
                )
    return curves


def write(out, runs, variants, settings):
    """Writes the report of `runs` (`{key: {seed: (run folder, results
    dict, preset)}}`) into `out`; `settings` are the comparison's flags."""
    rows = summarise(make_rows(runs, variants, settings))
    found = differences(rows, settings["protocol"])
    text = table(rows, found, settings)
    print("\n" + text)
    RunFolder.write_text(out / "compare.md", text + "\n")
    RunFolder.write_json(
        out / "compare.json",
        {
            "flags": settings,
            "protocols": {
                p.name: p.as_dict()
                for p in protocols.parse(settings["protocol"])
            },
            "rows": rows,
            "differences": found,
        },
    )
    task = f"{settings['ways']}-way {settings['shots']}-shot"
    steps = {}
    for row in rows:
        curves = [
            s["test_by_steps"] for s in row["seeds"] if s["test_by_steps"]
        ]
        if curves and len({len(c) for c in curves}) == 1:
            steps[row["algorithm"]] = [100 * m for m in np.mean(curves, axis=0)]
    plots.curves(
        steps,
        out / "compare_steps.png",
        title=f"{task}: test accuracy against adaptation steps",
    )
    plots.lines(
        validation_curves(rows),
        out / "compare_validation.png",
        xlabel="training time (s, meta-validation excluded)",
        ylabel="meta-validation accuracy (%)",
        title=f"{task}: learning against time",
    )
    first = next(iter(found.items()), None)
    if first and first[1]:
        key, pairs = first
        plots.intervals(
            [f"{d['a']} - {d['b']}" for d in pairs],
            [100 * d["mean"] for d in pairs],
            [100 * d["low"] for d in pairs],
            [100 * d["high"] for d in pairs],
            out / "compare_differences.png",
            xlabel="paired difference in test accuracy (points), 95% interval",
            title=f"{task}, {key}: {pairs[0]['seeds']} seeds x "
            f"{pairs[0]['tasks']} tasks",
        )
    print(f"Wrote {out}")
