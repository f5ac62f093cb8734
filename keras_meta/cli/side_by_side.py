"""Several analysed runs side by side: `keras-meta analyze --side_by_side=
RUN,RUN,...` reads each run's `analysis.json` (written by `analyze`) and
writes one table and two charts, a method per row (runs of one algorithm,
its training seeds, averaged):

- CKA of each layer's query activations before vs after the inner loop;
- test accuracy when the inner loop adapts every layer, block 4 and the
  head (blocks 1-3 frozen), the head alone, nothing; and the NIL head.

For ProtoNet and Proto-MAML the head is the task's prototype classifier, so
they have no head layer to compare (`-`).
"""

import json
import math
import pathlib

COLUMNS = (
    ("every layer", lambda rows: rows[0]),
    ("blocks 1-3 frozen", lambda rows: rows[3]),
    ("head alone", lambda rows: rows[-2]),
    ("nothing", lambda rows: rows[-1]),
)


def method_rows(run_dirs):
    """`{algorithm: {"runs", "layers": {name: mean CKA}, column: mean
    accuracy %}}` over the runs of each algorithm, in the order given."""
    methods = {}
    for run_dir in run_dirs:
        path = pathlib.Path(run_dir) / "analysis.json"
        if not path.exists():
            raise ValueError(
                f"{path} does not exist: run `train.analyze --model="
                f"{run_dir}` first."
            )
        result = json.loads(path.read_text())
        freezing = result["freezing"]
        rows = freezing.get(str(result["inner_steps"]))
        rows = rows or next(iter(freezing.values()))
        record = methods.setdefault(result["algorithm"], {"runs": []})
        run = {name: 100 * pick(rows)["accuracy"] for name, pick in COLUMNS}
        run["NIL head"] = 100 * result["nil"]["accuracy"]
        run["cka"] = {r["layer"]: r["cka"] for r in result["similarity"]}
        record["runs"].append(run)
    for record in methods.values():
        runs = record["runs"]
        layers = {name for run in runs for name in run["cka"]}
        record["cka"] = {
            name: sum(run["cka"][name] for run in runs) / len(runs)
            for name in layers
        }
        for name in [*dict(COLUMNS), "NIL head"]:
            record[name] = sum(run[name] for run in runs) / len(runs)
    return methods


def write(run_dirs, out_dir):
    """Writes `side_by_side.md`, `side_by_side_similarity.png` and
    `side_by_side_freezing.png` to `out_dir`; returns the table's text."""
    from keras_meta import plots
    from keras_meta.atomic import atomic_path

    methods = method_rows(run_dirs)
    layers = []
    for record in methods.values():
        layers += [name for name in sorted(record["cka"]) if name not in layers]
    layers.sort(key=lambda name: (name == "head", name))
    accuracy = [*dict(COLUMNS), "NIL head"]
    lines = [
        "| method | runs | "
        + " | ".join(f"CKA {name}" for name in layers)
        + " | "
        + " | ".join(f"{name} (%)" for name in accuracy)
        + " |",
        "| --- " * (2 + len(layers) + len(accuracy)) + "|",
    ]
    for algorithm, record in methods.items():
        cka = [
            f"{record['cka'][name]:.3f}" if name in record["cka"] else "-"
            for name in layers
        ]
        scores = [f"{record[name]:.1f}" for name in accuracy]
        lines.append(
            f"| {algorithm} | {len(record['runs'])} | "
            + " | ".join(cka + scores)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "side_by_side.md", suffix=".md") as staged:
        pathlib.Path(staged).write_text(text)
    plots.bar_chart(
        layers,
        None,
        out_dir / "side_by_side_similarity.png",
        ylabel="CKA before vs after adaptation",
        title="Which layers the inner loop changes (1 = unchanged)",
        series={
            algorithm: [record["cka"].get(name, math.nan) for name in layers]
            for algorithm, record in methods.items()
        },
        legend="outside",
    )
    plots.bar_chart(
        accuracy,
        None,
        out_dir / "side_by_side_freezing.png",
        ylabel="test accuracy (%)",
        title="What the inner loop adapts at test time",
        series={
            algorithm: [record[name] for name in accuracy]
            for algorithm, record in methods.items()
        },
        legend="outside",
    )
    return text
