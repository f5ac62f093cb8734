"""The report of `train.compare`: its table (`compare.md`, `compare.json`)
and figures (`compare_steps.png`, `compare_validation.png`)."""

from keras_meta import plots
from keras_meta.cli import presets
from keras_meta.cli.run_folder import RunFolder


def nil_row(run_dir, config, num_tasks):
    """The NIL head (no inner loop) on a run's final model."""
    import keras

    import keras_meta
    from keras_meta.cli import datasets
    from keras_meta.cli.config import RunConfig

    model = keras.models.load_model(run_dir / "model.keras")
    return keras_meta.analysis.nil_accuracy(
        model,
        datasets.make_data(RunConfig.from_dict(config), "test"),
        num_tasks,
    )


def make_rows(runs, variants, eval_tasks):
    """One table row per run, and the NIL head of the Pretrain run."""
    rows = []
    for key, (run_dir, result, preset) in runs.items():
        paper = (
            presets.PRESETS[preset]["paper"]
            if preset and not variants[key].flags
            else None
        )
        rows.append(
            {
                "algorithm": variants[key].name,
                "preset": preset,
                "accuracy": result["test"]["mean"],
                "ci95": result["test"]["ci95"],
                "train_seconds": result["train_seconds"],
                "iterations": result["iterations_trained"],
                "selected_iteration": result.get("selected_iteration"),
                "tasks_seen": result.get("tasks_seen"),
                "examples_seen": result.get("examples_seen"),
                "peak_rss_mib": result.get("peak_rss_mib"),
                "test_by_steps": [p["mean"] for p in result["test_by_steps"]],
                "paper": paper,
                "run": str(run_dir),
            }
        )
    if "pretrain" in runs:
        run_dir, result, _ = runs["pretrain"]
        nil = nil_row(run_dir, result["config"], eval_tasks)
        rows.append(
            {
                **rows[list(runs).index("pretrain")],
                "algorithm": "Pretrain (NIL head)",
                "accuracy": nil["accuracy"],
                "ci95": nil["ci95"],
                "test_by_steps": None,
                "paper": None,
            }
        )
    return rows


def table(rows, settings):
    """The Markdown table of `compare.md`."""

    def cell(value, fmt):
        return "" if value is None else format(value, fmt)

    budget = (
        f"{settings['budget']} meta-iterations each"
        if settings["budget"]
        else f"{settings['minutes']:g} minutes of training each"
    )
    lines = [
        f"{settings['dataset']} {settings['ways']}-way "
        f"{settings['shots']}-shot, {budget}, {settings['eval_tasks']} "
        "meta-test tasks (95% CI), bn=transductive, best meta-validation "
        "model",
        "",
        "| algorithm | accuracy | 95% CI | training (s) | iterations "
        "(selected) | tasks seen | peak memory (MiB) | paper |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        seen = r["tasks_seen"] or (
            f"{r['examples_seen']} images" if r["examples_seen"] else None
        )
        lines.append(
            f"| {r['algorithm']} | {100 * r['accuracy']:.1f}% | "
            f"+- {100 * r['ci95']:.1f}% | {cell(r['train_seconds'], '.0f')} | "
            f"{r['iterations']} ({cell(r['selected_iteration'], 'd')}) | "
            f"{'' if seen is None else seen} | "
            f"{cell(r['peak_rss_mib'], '.0f')} | "
            f"{'' if r['paper'] is None else str(r['paper']) + '%'} |"
        )
    return "\n".join(lines)


def validation_curves(runs, variants):
    """`{name: (train seconds, val accuracy %)}` from each run's history."""
    curves = {}
    for key, (run_dir, _, _) in runs.items():
        history = plots.read_history(run_dir / "history.csv")
        if "train_seconds" in history and "val_accuracy" in history:
            curves[variants[key].name] = (
                history["train_seconds"],
                [100 * v for v in history["val_accuracy"]],
            )
    return curves


def write(out, runs, variants, settings):
    """Writes the report of `runs` (`{key: (run folder, results dict,
    preset)}`) into `out`; `settings` are the comparison's flags."""
    rows = make_rows(runs, variants, settings["eval_tasks"])
    text = table(rows, settings)
    print("\n" + text)
    RunFolder.write_text(out / "compare.md", text + "\n")
    report = {"flags": settings, "rows": rows}
    RunFolder.write_json(out / "compare.json", report)
    task = f"{settings['ways']}-way {settings['shots']}-shot"
    plots.curves(
        {
            r["algorithm"]: [100 * m for m in r["test_by_steps"]]
            for r in rows
            if r["test_by_steps"]
        },
        out / "compare_steps.png",
        title=f"{task}: test accuracy against adaptation steps",
    )
    plots.lines(
        validation_curves(runs, variants),
        out / "compare_validation.png",
        xlabel="training time (s, meta-validation excluded)",
        ylabel="meta-validation accuracy (%)",
        title=f"{task}: learning against time",
    )
    print(f"Wrote {out}")
