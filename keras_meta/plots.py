"""PNG plots of a run: the learning curve and accuracy against steps."""

import csv

from keras_meta.atomic import atomic_path


def pyplot():
    """matplotlib's pyplot on the Agg backend (files, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_history(csv_path):
    """Columns of a `keras.callbacks.CSVLogger` file as lists of floats."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return columns


def learning_curve(
    history, iterations, path, metric="accuracy", title="Learning curve"
):
    """Meta-train loss and `metric`, and meta-validation `metric`, against
    iteration. `history` maps names (`loss`, `accuracy`, `val_accuracy`)
    to per-evaluation values taken at `iterations`."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if "loss" in history:
        left.plot(iterations, history["loss"], label="meta-train loss")
    if "val_loss" in history:
        left.plot(iterations, history["val_loss"], label="meta-val loss")
    left.set_xlabel("meta-iteration")
    left.set_ylabel("query loss after adaptation")
    left.legend()
    for key, label in ((metric, "meta-train"), (f"val_{metric}", "meta-val")):
        if key in history:
            right.plot(iterations, history[key], label=label)
    right.set_xlabel("meta-iteration")
    right.set_ylabel(f"query {metric} after adaptation")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def score_by_steps(steps, means, ci95, path, metric="accuracy", title=""):
    """Test score (with 95% CI bars) against adaptation steps."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    scale = 100.0 if metric == "accuracy" else 1.0
    ax.errorbar(
        steps,
        [scale * m for m in means],
        yerr=[scale * c for c in ci95],
        marker="o",
        capsize=3,
    )
    ax.set_xlabel("adaptation steps at test time")
    ax.set_ylabel(f"test {metric}" + (" (%)" if metric == "accuracy" else ""))
    ax.set_title(title or f"Test {metric} against adaptation steps")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path):
    """Writes `fig` to the PNG `path` atomically, then closes it."""
    with atomic_path(path, suffix=".png") as staged:
        fig.savefig(staged, dpi=100)
    pyplot().close(fig)


def bar_chart(
    names,
    values,
    path,
    errors=None,
    ylabel="",
    title="",
    series=None,
    legend="best",
):
    """Bars of `values` (or of several `series` {label: values}) by name;
    `legend` places the series' legend (a matplotlib `loc`, or
    `"outside"`: right of the axes)."""
    plt = pyplot()
    series = series or {ylabel: values}
    width = max(5, 1.1 * len(names)) + (2 if legend == "outside" else 0)
    fig, ax = plt.subplots(figsize=(width, 4))
    width = 0.8 / len(series)
    for k, (label, heights) in enumerate(series.items()):
        positions = [
            i + (k - (len(series) - 1) / 2) * width for i in range(len(names))
        ]
        ax.bar(
            positions,
            heights,
            width,
            yerr=errors if len(series) == 1 else None,
            capsize=3,
            label=label,
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1 and legend == "outside":
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    elif len(series) > 1:
        ax.legend(loc=legend)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def curves(named_means, path, ylabel="test accuracy (%)", title=""):
    """One line per name: score against 0, 1, ... adaptation steps."""
    lines(
        {
            name: (list(range(len(means))), means)
            for name, means in named_means.items()
        },
        path,
        xlabel="adaptation steps at test time",
        ylabel=ylabel,
        title=title,
    )


def lines(named_xy, path, xlabel="", ylabel="", title=""):
    """One line per name `{name: (xs, ys)}`, or several in one colour
    `{name: [(xs, ys), ...]}` (a method's training seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, series) in enumerate(named_xy.items()):
        if isinstance(series, tuple):
            series = [series]
        for i, (xs, ys) in enumerate(series):
            ax.plot(
                xs,
                ys,
                marker="o",
                markersize=3,
                color=f"C{k}",
                alpha=1.0 if len(series) == 1 else 0.7,
                label=name if i == 0 else None,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def intervals(labels, means, lows, highs, path, xlabel="", title=""):
    """One horizontal interval per label, its mean marked, and the zero
    line: an interval that crosses it shows no difference."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1.5))
    positions = list(range(len(labels)))[::-1]
    for y, mean, low, high in zip(positions, means, lows, highs):
        colour = "C0" if low > 0 or high < 0 else "0.5"
        ax.plot([low, high], [y, y], color=colour, linewidth=2)
        ax.plot([mean], [y], "o", color=colour)
    ax.axvline(0.0, color="k", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels)
    ax.set_xlabel(xlabel)
    # Right-aligned: the long labels leave the axes the figure's right
    # part, and a centred title would run off it.
    ax.set_title(title, loc="right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
