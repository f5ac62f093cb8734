"""Peak memory and time against inner steps, from a memory sweep's JSON.

    python benchmarks/throughput.py --memory_sweep --json sweep.json ...
    python benchmarks/plot_memory_sweep.py sweep.json memory_sweep.png

Two panels of `keras_meta.plots.lines`' kind: peak resident memory (MiB)
and seconds per iteration against the number of inner steps, one line per
method (second-order MAML unrolled, MAML with `recompute=True`, iMAML).
"""

import argparse
import json

from keras_meta.plots import pyplot, save_figure


def series(rows):
    """`{method: (steps, peak MiB, s / iteration)}`, sorted by steps."""
    named = {}
    for row in rows:
        if row["algorithm"] == "maml":
            name = "MAML, recompute" if row["recompute"] else "MAML"
        elif row["algorithm"] == "imaml":
            name = "iMAML"
        else:
            continue
        # The sweep's own row of a step count wins over a table row.
        named.setdefault(name, {})[row["inner_steps"]] = (
            row["peak_rss_mib"],
            row["seconds_per_iteration"],
        )
    return {
        name: tuple(zip(*[(k, *v) for k, v in sorted(points.items())]))
        for name, points in named.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="throughput.py --memory_sweep --json")
    parser.add_argument("png", help="where to write the figure")
    args = parser.parse_args()
    with open(args.json) as f:
        sweep = json.load(f)
    named = series(sweep["results"])
    if not named:
        parser.error(f"{args.json} has no memory-sweep rows (maml, imaml).")
    plt = pyplot()
    fig, (memory, time) = plt.subplots(1, 2, figsize=(10, 4))
    for k, (name, (steps, peaks, seconds)) in enumerate(named.items()):
        style = dict(marker="o", markersize=3, color=f"C{k}", label=name)
        memory.plot(steps, peaks, **style)
        time.plot(steps, seconds, **style)
    for ax, label in ((memory, "peak RSS (MiB)"), (time, "s / iteration")):
        ax.set_xlabel("inner steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    config = sweep["results"][-1]["config"]
    fig.suptitle(f"{config}: peak memory and time against inner steps")
    fig.tight_layout()
    save_figure(fig, args.png)
    print(f"Wrote {args.png}")


if __name__ == "__main__":
    main()
