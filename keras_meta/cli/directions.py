"""The three update directions, drawn: `keras-meta directions` (or
`python -m train.directions`).

A family of two-parameter tasks, linear regressions `y = x . c_t` with
inputs `x ~ N(0, S_t)`: the task loss is the quadratic `(w - c_t)^T S_t (w -
c_t)`, with curvature `2 S_t`. Half the tasks are sharp (S = 1.8 I) around
one centre, half flat (S = 0.3 I) around another. Pre-training, MAML and
Reptile each train a two-weight learner (`Dense(1, use_bias=False)`) from
the same initialisation with keras_meta, and the picture shows where each
goes and why:

- pre-training minimises the loss at phi: sharp tasks weigh most (weight
  S_t), so phi moves towards their centre;
- MAML minimises the loss after one inner step: a sharp task is solved by
  its step anyway (weight `S_t (I - 2 a S_t)^2`), so phi moves towards the
  flat tasks, which need the head start;
- Reptile moves phi towards the weights each task reaches in k steps:
  weight `I - (I - 2 a S_t)^k`, in between.

Writes directions.png (contours of the three objectives, the paths, each
task's inner steps from where each method ends, and the first update
directions g1, MAML's and Reptile's at the start) and directions.json (the
end points beside the closed-form optima).
"""

import pathlib
import sys

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "output_dir", "saved_models/directions", "Where to write the figure."
)
flags.DEFINE_integer("iterations", 300, "Meta-iterations of each method.")
flags.DEFINE_integer("seed", 0, "Seed of the tasks.")

INNER_LR = 0.25  # a
REPTILE_STEPS = 2  # k
CENTRES = {"sharp": (1.5, 1.0), "flat": (-1.5, -1.0)}
SCALES = {"sharp": 1.8, "flat": 0.3}
START = (0.0, 2.5)
SHOTS = 100
META_BATCH = 16


def task_family():
    """`[(centre, S)]` of the task family's two groups."""
    return [
        (np.asarray(CENTRES[g], float), SCALES[g] * np.eye(2)) for g in CENTRES
    ]


def sample_tasks(seed, count):
    """`count * META_BATCH` tasks: `(centres [n, 2], x [n, 2 * SHOTS, 2])`,
    half of them sharp and half flat, centres jittered."""
    rng = np.random.default_rng(seed)
    family = task_family()
    centres, xs = [], []
    for _ in range(count * META_BATCH):
        centre, s = family[rng.integers(len(family))]
        centres.append(centre + 0.2 * rng.normal(size=2))
        xs.append(rng.multivariate_normal(np.zeros(2), s, size=2 * SHOTS))
    return np.asarray(centres), np.asarray(xs)


def closed_form_optima(centres, xs):
    """Where each method's objective over these tasks is smallest (numpy
    alone): `(sum_t W_t)^-1 sum_t W_t c_t`, with per task the support and
    query second moments `A` and `B` (the loss is `(w - c)^T A (w - c)`)
    and `W = (A + B) / 2` (pre-training: the loss at phi of all its
    examples), `(I - 2aA) B (I - 2aA)` (MAML: the query loss after one
    step) or `I - (I - 2aA)^k` (Reptile: the fixed point of k steps)."""
    a, k, eye = INNER_LR, REPTILE_STEPS, np.eye(2)
    support, query = xs[:, :SHOTS], xs[:, SHOTS:]
    moments = {
        "A": np.einsum("tni,tnj->tij", support, support) / SHOTS,
        "B": np.einsum("tni,tnj->tij", query, query) / SHOTS,
    }
    weights = {
        "pretrain": [(A + B) / 2 for A, B in zip(moments["A"], moments["B"])],
        "maml": [
            (eye - 2 * a * A) @ B @ (eye - 2 * a * A)
            for A, B in zip(moments["A"], moments["B"])
        ],
        "reptile": [
            eye - np.linalg.matrix_power(eye - 2 * a * A, k)
            for A in moments["A"]
        ],
    }
    return {
        name: np.linalg.solve(sum(w), sum(wt @ c for wt, c in zip(w, centres)))
        for name, w in weights.items()
    }


def episodes(centres, xs):
    """The tasks as a dataset of meta-batches of META_BATCH tasks."""
    import tensorflow as tf

    ys = xs @ centres[:, :, None]
    count = len(xs) // META_BATCH
    xs = xs.astype("float32").reshape(count, META_BATCH, 2 * SHOTS, 2)
    ys = ys.astype("float32").reshape(count, META_BATCH, 2 * SHOTS, 1)
    return tf.data.Dataset.from_tensor_slices(
        (
            {
                "support_x": xs[:, :, :SHOTS],
                "support_y": ys[:, :, :SHOTS],
                "query_x": xs[:, :, SHOTS:],
            },
            ys[:, :, SHOTS:],
        )
    )


def two_weight_learner():
    import keras

    learner = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, use_bias=False)]
    )
    learner.layers[0].kernel.assign(np.asarray(START, "float32")[:, None])
    return learner


def train_paths(data):
    """`{method: [phi after each iteration]}`, each from START."""
    import keras

    import keras_meta

    models = {
        "pretrain": keras_meta.Pretrain(
            two_weight_learner(), INNER_LR, 1, adaptation="fine_tune"
        ),
        "maml": keras_meta.MAML(two_weight_learner(), INNER_LR),
        "reptile": keras_meta.Reptile(
            two_weight_learner(), INNER_LR, REPTILE_STEPS
        ),
    }
    rates = {"pretrain": 0.05, "maml": 0.2, "reptile": 0.5}
    paths = {}
    for name, model in models.items():
        path = [np.asarray(START)]
        model.compile(optimizer=keras.optimizers.SGD(rates[name]), loss="mse")
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs, model=model, path=path: (
                path.append(model.learner.layers[0].kernel.numpy()[:, 0])
            )
        )
        model.fit(data, epochs=1, callbacks=[record], verbose=0)
        paths[name] = np.asarray(path)
    return paths, models


def first_directions(models, data):
    """The three methods' first update directions at START, averaged over
    the first meta-batch (`keras_meta.analysis.update_directions`' parts)."""
    from keras_meta.analysis.update_directions import (
        directions_function as _directions_function,
    )

    model = models["maml"]
    model.learner.layers[0].kernel.assign(np.asarray(START, "float32")[:, None])
    fn = _directions_function(model, REPTILE_STEPS, INNER_LR)
    x, y = next(iter(data))
    total = {"pretrain": 0, "maml": 0, "reptile": 0}
    for t in range(META_BATCH):
        pretrain, _, _, reptile = fn(
            x["support_x"][t], x["support_y"][t], x["query_x"][t], y[t]
        )
        total["pretrain"] += pretrain[0].numpy()[:, 0] / META_BATCH
        total["reptile"] += reptile[0].numpy()[:, 0] / META_BATCH
    one_step = _directions_function(model, 1, INNER_LR)
    for t in range(META_BATCH):
        total["maml"] += (
            one_step(
                x["support_x"][t], x["support_y"][t], x["query_x"][t], y[t]
            )[2][0].numpy()[:, 0]
            / META_BATCH
        )
    return total


def draw(paths, optima, directions, path):
    from keras_meta import plots

    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    grid = np.linspace(-3, 3, 121)
    gx, gy = np.meshgrid(grid, grid)
    points = np.stack([gx, gy], axis=-1)
    pretrain_loss = sum(
        np.einsum("...i,ij,...j->...", points - c, s, points - c)
        for c, s in task_family()
    )
    ax.contour(gx, gy, np.log(pretrain_loss), 12, colors="0.85", linewidths=0.8)
    colours = {
        "pretrain": "tab:blue",
        "maml": "tab:red",
        "reptile": "tab:green",
    }
    for group, (c, _) in zip(CENTRES, task_family()):
        ax.scatter(*c, marker="*", s=250, c="k")
        ax.annotate(
            f"{group} tasks", c, textcoords="offset points", xytext=(8, 8)
        )
    for name, trail in paths.items():
        ax.plot(
            trail[:, 0], trail[:, 1], color=colours[name], lw=1.5, label=name
        )
        ax.scatter(*optima[name], marker="x", s=80, color=colours[name])
        end = trail[-1]
        for c, s in task_family():  # one inner step of each group from the end
            step = end - INNER_LR * 2 * s @ (end - c)
            ax.annotate(
                "",
                step,
                end,
                arrowprops=dict(arrowstyle="->", color=colours[name], lw=0.8),
            )
        d = directions[name]
        ax.annotate(
            "",
            np.asarray(START) - 0.6 * d / max(np.linalg.norm(d), 1e-12),
            START,
            arrowprops=dict(arrowstyle="-|>", color=colours[name], lw=2),
        )
    ax.scatter(*START, s=60, c="k")
    ax.annotate("phi0", START, textcoords="offset points", xytext=(6, -12))
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    ax.legend(loc="lower right")
    ax.set_title(
        "Paths of phi (lines) to each method's optimum over the same tasks "
        "(x, numpy);\none inner step of each task group from each end (thin "
        "arrows);\nfirst update directions at phi0 (thick arrows)",
        fontsize=9,
    )
    fig.tight_layout()
    plots.save_figure(fig, path)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    import keras

    from keras_meta.cli.run_folder import RunFolder

    keras.utils.set_random_seed(FLAGS.seed)
    out = pathlib.Path(FLAGS.output_dir)
    centres, xs = sample_tasks(FLAGS.seed, FLAGS.iterations)
    data = episodes(centres, xs)
    paths, models = train_paths(data)
    optima = closed_form_optima(centres, xs)
    directions = first_directions(models, data)
    out.mkdir(parents=True, exist_ok=True)
    draw(paths, optima, directions, out / "directions.png")
    result = {
        name: {
            "end": paths[name][-1].tolist(),
            "optimum_of_these_tasks": optima[name].tolist(),
            "first_direction": directions[name].tolist(),
        }
        for name in paths
    }
    RunFolder.write_json(out / "directions.json", result)
    for name, r in result.items():
        print(
            f"{name:<9} ends at ({r['end'][0]:+.2f}, {r['end'][1]:+.2f}); "
            "optimum of these tasks "
            f"({r['optimum_of_these_tasks'][0]:+.2f}, "
            f"{r['optimum_of_these_tasks'][1]:+.2f})"
        )
    print(f"Wrote {out}")
    return 0


def run(argv=None):
    """Entry point (`python -m train.directions`, `keras-meta directions`)."""
    from keras_meta.cli.flags import run_app

    run_app(main, argv)
