"""Every algorithm side by side, fairly: `keras-meta compare` (or
`python -m train.compare`).

    python -m train.compare --ways=5 --shots=1 --minutes=10 --seeds=3

Each algorithm trains with its own paper's settings (its preset for this
dataset, N and K, when there is one) for the same training time
(`--minutes`, meta-validation excluded; or the same number of iterations
with `--budget`), with its schedules scaled to the run it actually gets
(Reptile's meta-step annealed to 0 over the time budget), once per training
seed (`--seeds`), and is tested with the weights that scored best on
meta-validation (never on test tasks). Every row is tested under each
`--protocol` on the same test tasks, and under its own paper's protocol.
Runs go to `<output_dir>/seed_<s>/<algorithm>/`.

The report (`compare.md`, `compare.json`) gives each method's mean over
seeds with the spread between seeds, and every pairwise difference as a
paired difference over the same seeds and test tasks with its 95%
interval (`keras_meta.statistics`), worded as a finding only when the
interval excludes zero. `compare_validation.png` draws meta-validation
accuracy against training time, `compare_steps.png` test accuracy against
adaptation steps, `compare_differences.png` the paired differences.
`--resume` reuses finished rows (testing them under any protocol they
lack) and resumes broken ones.
"""

import json
import pathlib
import shlex
import subprocess
import sys
import typing

from absl import flags

from keras_meta import protocols
from keras_meta.cli import presets

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "omniglot", "Dataset, as for train.maml.")
flags.DEFINE_integer("ways", 5, "N.", lower_bound=2)
flags.DEFINE_integer("shots", 1, "K.", lower_bound=1)
flags.DEFINE_float(
    "minutes",
    15.0,
    "Training time per algorithm (meta-validation excluded).",
    lower_bound=0.01,
)
flags.DEFINE_integer(
    "budget",
    None,
    "Meta-iterations per algorithm instead of a time budget (an equal count "
    "of iterations is not an equal cost).",
    lower_bound=1,
)
flags.DEFINE_list(
    "algorithms",
    "maml,fomaml,anil,reptile,pretrain",
    "Rows to run, among: maml, fomaml, anil, reptile, pretrain, metasgd, "
    "boil, imaml, protonet, protomaml, "
    "mamlpp, mamlpp_stride (MAML++ on MAML's strided network), joint (the "
    "initialisation trained on the tasks' own loss, no inner loop: the "
    "pre-training direction g1).",
)
flags.DEFINE_integer("eval_every", 250, "Iterations between validations.")
flags.DEFINE_integer("val_tasks", 100, "Meta-validation tasks.")
flags.DEFINE_integer(
    "eval_tasks",
    None,
    "Meta-test tasks per protocol (default: each protocol's own count).",
    lower_bound=1,
)
flags.DEFINE_integer("seed", 0, "The first training seed.", lower_bound=0)
flags.DEFINE_integer(
    "seeds",
    1,
    "Training seeds per row: --seed, --seed + 1, ... (every row and seed is "
    "tested on the same tasks).",
)
flags.DEFINE_string(
    "protocol",
    "maml,15_queries",
    "Protocols every row is tested under, comma-separated; each row is also "
    "tested under its own paper's. The paired differences are reported for "
    "each of these.",
)
flags.DEFINE_string("output_dir", None, "Where to write.")
flags.DEFINE_string("data_dir", None, "TFDS data folder.")
flags.DEFINE_boolean("overwrite", False, "Replace earlier runs.")
flags.DEFINE_boolean("resume", False, "Reuse finished rows, resume others.")
flags.DEFINE_string(
    "extra", "", "More flags for every training script, e.g. '--filters=32'."
)


class Variant(typing.NamedTuple):
    """A row `--algorithms` can ask for: its name in the table, the training
    script, and what it sets over the script's preset."""

    name: str
    script: str
    first_order: bool = False
    flags: tuple = ()


VARIANTS = {
    "maml": Variant("MAML", "maml"),
    "fomaml": Variant("first-order MAML", "maml", first_order=True),
    "anil": Variant("ANIL", "anil"),
    "reptile": Variant("Reptile", "reptile"),
    "pretrain": Variant("Pretrain (fresh head)", "pretrain"),
    "metasgd": Variant("Meta-SGD", "metasgd"),
    "boil": Variant("BOIL", "boil"),
    "imaml": Variant("iMAML", "imaml"),
    "protonet": Variant("ProtoNet", "protonet"),
    "protomaml": Variant("Proto-MAML", "protomaml"),
    "mamlpp": Variant("MAML++", "mamlpp"),
    # MAML++'s fixes on MAML's own network: its paper's ablation compares
    # them on one network, where the presets' networks differ.
    "mamlpp_stride": Variant(
        "MAML++ (MAML's strided network)",
        "mamlpp",
        flags=("--pooling=stride",),
    ),
    # Raghu et al.'s inner loop (5 steps of a small rate, in meta-training
    # and at test) in place of MAML's one step of 0.4: does the head-only
    # gap of the feature-reuse analysis come from the inner loop?
    "maml_5steps": Variant(
        "MAML, 5 steps of 0.1",
        "maml",
        flags=("--inner_steps=5", "--inner_lr=0.1", "--eval_inner_steps=5"),
    ),
    # MAML's settings, trained without the inner loop: the initialisation
    # that is best on the tasks now, adapted at test time like MAML's.
    "joint": Variant(
        "Pretrain on tasks (no inner loop)",
        "maml",
        flags=("--inner_steps=0",),
    ),
}


def extra_flags(script):
    """The `--extra` flags that apply to `train.<script>` (a flag for
    another algorithm only, such as --batch_size, is left out)."""
    from keras_meta.cli.registry import option_owners
    from keras_meta.cli.run_config import RunConfig

    fields = RunConfig.__dataclass_fields__
    owners = option_owners()
    known = set(fields) | set(owners)
    kept = []
    for flag in shlex.split(FLAGS.extra):
        name = flag.lstrip("-").split("=")[0]
        name = name[2:] if name.startswith("no") and name[2:] in known else name
        if name in fields:
            only = fields[name].metadata.get("only")
        else:
            only = owners.get(name)
        if not only or script in only:
            kept.append(flag)
    return kept


def row_protocols(preset):
    """The protocols a row is tested under: its paper's first (its preset's
    headline), then --protocol's."""
    names = [] if not preset else [presets.PRESETS[preset]["protocol"]]
    names += [n.strip() for n in FLAGS.protocol.split(",")]
    return ",".join(dict.fromkeys(names))


def row_command(key, run_dir, seed):
    """The training command of one row, and the preset it uses (or None)."""
    _, script, first_order, variant_flags = VARIANTS[key]
    preset = presets.find(
        script, FLAGS.dataset, FLAGS.ways, FLAGS.shots, first_order
    )
    command = [sys.executable, "-m", "keras_meta.cli", "train", script]
    if preset:
        command.append(f"--preset={preset}")
    else:
        command += [
            f"--dataset={FLAGS.dataset}",
            f"--ways={FLAGS.ways}",
            f"--shots={FLAGS.shots}",
        ]
    if first_order and not preset:
        command.append("--first_order")
    budget = (
        [f"--iterations={FLAGS.budget}"]
        if FLAGS.budget
        else [f"--minutes={FLAGS.minutes}"]
    )
    command += [
        *budget,
        "--select=best_val",
        f"--eval_every={FLAGS.eval_every}",
        f"--checkpoint_every={FLAGS.eval_every}",
        f"--val_tasks={FLAGS.val_tasks}",
        "--eval_queries=15",
        f"--protocol={row_protocols(preset)}",
        f"--seed={seed}",
        f"--output_dir={run_dir}",
        "--verbose=2",
        *variant_flags,
        *extra_flags(script),
    ]
    if FLAGS.eval_tasks:
        command.append(f"--eval_tasks={FLAGS.eval_tasks}")
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    return command, preset


def run_command(name, command):
    """Runs one script as a subprocess; `RuntimeError` if it fails."""
    print(f"== {name}: {shlex.join(command[2:])}", flush=True)
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise RuntimeError(
            f"{name} failed (exit {done.returncode}); see above."
        )


def train_row(key, run_dir, seed):
    """Trains one row (or reuses/resumes it), tests it under every protocol
    the comparison needs; returns its results dict and preset."""
    command, preset = row_command(key, run_dir, seed)
    name = f"{VARIANTS[key].name}, seed {seed}"
    results = run_dir / "results.json"
    if FLAGS.resume and results.exists():
        print(f"== {name}: reusing {run_dir}", flush=True)
        test = [
            sys.executable,
            "-m",
            "keras_meta.cli",
            "evaluate",
            f"--run={run_dir}",
            f"--protocol={row_protocols(preset)}",
        ]
        if FLAGS.eval_tasks:
            test.append(f"--eval_tasks={FLAGS.eval_tasks}")
        if FLAGS.data_dir:
            test.append(f"--data_dir={FLAGS.data_dir}")
        run_command(f"{name}: testing", test)
        return json.loads(results.read_text()), preset
    if FLAGS.resume and (run_dir / "checkpoint" / "checkpoint.json").exists():
        command = [*command[:5], "--resume", f"--output_dir={run_dir}"]
    elif FLAGS.overwrite:
        command.append("--overwrite")
    run_command(name, command)
    return json.loads(results.read_text()), preset


def seeds():
    return list(range(FLAGS.seed, FLAGS.seed + FLAGS.seeds))


def compare(out):
    """Trains (or reuses) every requested row for every seed, then writes
    the report."""
    from keras_meta.cli import compare_report

    runs = {}
    for seed in seeds():
        for key in FLAGS.algorithms:
            run_dir = out / f"seed_{seed}" / key
            result, preset = train_row(key, run_dir, seed)
            runs.setdefault(key, {})[seed] = (run_dir, result, preset)
    settings = {
        k: FLAGS[k].value
        for k in (
            "dataset",
            "ways",
            "shots",
            "minutes",
            "budget",
            "eval_tasks",
            "seed",
            "seeds",
            "protocol",
            "extra",
        )
    }
    settings["seed_list"] = seeds()
    compare_report.write(out, runs, VARIANTS, settings)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    unknown = [a for a in FLAGS.algorithms if a not in VARIANTS]
    if unknown:
        print(
            f"error: unknown --algorithms {unknown}; choose among "
            f"{', '.join(VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    if FLAGS.resume and FLAGS.overwrite:
        print("error: --resume and --overwrite contradict", file=sys.stderr)
        return 2
    if FLAGS.seeds < 1:
        print(
            f"error: --seeds={FLAGS.seeds}: train each row at least once "
            "(--seeds=1 or more).",
            file=sys.stderr,
        )
        return 2
    try:
        protocols.parse(FLAGS.protocol)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = pathlib.Path(
        FLAGS.output_dir
        or f"saved_models/compare_{FLAGS.dataset}_{FLAGS.ways}w{FLAGS.shots}s"
    )
    try:
        compare(out)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run(argv=None):
    """Entry point (`python -m train.compare`, `keras-meta compare`)."""
    from keras_meta.cli.flags import run_app

    run_app(main, argv)
