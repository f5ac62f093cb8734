"""absl flags of the training scripts, generated: the run's settings from
`RunConfig`, the algorithm's options from its constructor.

`define(algorithm)` defines one flag per `RunConfig` field (with that
algorithm's run defaults; bounds and choices as absl validators), one per
option of any registered algorithm (with this algorithm's constructor
default, so `--helpfull` shows the real one; an option of another
algorithm is refused when given), and the flags that steer a run.
`parse_with_exit_2` makes absl report a bad flag with exit code 2, like
every other usage error of the scripts.
"""

import sys

from absl import flags

from keras_meta.cli.presets import PRESETS
from keras_meta.cli.registry import ALGORITHMS, option_owners
from keras_meta.cli.run_config import RunConfig

FLAGS = flags.FLAGS
USAGE_EXIT = 2


def define(algorithm):
    """Defines the flags of `train.<algorithm>` (once per process)."""
    entry = ALGORITHMS[algorithm]
    defaults = entry.run_defaults
    for field in RunConfig.fields():
        name, meta = field.name, field.metadata
        default = defaults.get(name, field.default)
        help_text = meta["help"]
        if meta["only"]:
            help_text += f" [{'/'.join(meta['only'])} only]"
        if meta["choices"]:
            flags.DEFINE_enum(name, default, meta["choices"], help_text)
        elif field.type is bool:
            flags.DEFINE_boolean(name, default, help_text)
        elif field.type in (int, int | None):
            flags.DEFINE_integer(
                name, default, help_text, lower_bound=meta["lower"]
            )
        elif field.type in (float, float | None):
            flags.DEFINE_float(
                name, default, help_text, lower_bound=meta["lower"]
            )
        else:
            flags.DEFINE_string(name, default, help_text)
    define_options(algorithm)
    define_steering(algorithm)


def define_options(algorithm):
    """One flag per constructor option of every registered algorithm, with
    `algorithm`'s default where it has the option."""
    ours = {o.name: o for o in ALGORITHMS[algorithm].options}
    owners = option_owners()
    for name, algorithms in owners.items():
        option = ours.get(name) or next(
            o for o in ALGORITHMS[algorithms[0]].options if o.name == name
        )
        help_text = option.help or f"{name} (a constructor argument)."
        if name not in ours:
            help_text += f" [{'/'.join(algorithms)} only]"
        define = {
            bool: flags.DEFINE_boolean,
            int: flags.DEFINE_integer,
            float: flags.DEFINE_float,
        }.get(option.kind, flags.DEFINE_string)
        default = option.default
        if option.accepts_bool and isinstance(default, bool):
            default = str(default).lower()
        define(name, default, help_text)


def define_steering(algorithm):
    """The flags that steer a run rather than define it."""
    ours = [p for p, v in PRESETS.items() if v["algorithm"] == algorithm]
    flags.DEFINE_enum(
        "preset",
        None,
        list(PRESETS),
        "Named settings from a paper; explicit flags override it. For "
        f"train.{algorithm}: {', '.join(ours) or 'none'} (README: Presets).",
    )
    flags.DEFINE_string(
        "output_dir", None, "Where the run writes (default saved_models/<run>)."
    )
    flags.DEFINE_string("run_name", None, "Name of the run (default: derived).")
    flags.DEFINE_boolean(
        "resume", False, "Continue the run in output_dir from its checkpoint."
    )
    flags.DEFINE_boolean(
        "overwrite", False, "Delete what output_dir holds and start afresh."
    )
    flags.DEFINE_boolean(
        "keep_snapshots",
        False,
        "Also keep the model at every evaluation as "
        "snapshots/epoch_<E>.keras (E * eval_every iterations), to study "
        "how it changes along the run (train.analyze --snapshots).",
    )
    flags.DEFINE_boolean(
        "print_config",
        False,
        "Print the resolved settings (defaults < preset < flags) as JSON "
        "and exit without training.",
    )
    flags.DEFINE_integer(
        "verbose",
        None,
        "Keras verbosity: 0, 1 (live bar) or 2 (one line per epoch); "
        "default 1 on a terminal, 2 when the output goes to a file or pipe.",
        lower_bound=0,
        upper_bound=2,
    )
    flags.DEFINE_string(
        "task_parallelism",
        "auto",
        "Tasks of a meta-batch run at once, sharing the CPU cores "
        "(keras_meta.config.set_task_parallelism(N, 'global'): TensorFlow's "
        "threads per op become cores // N on a CPU-only host): a positive "
        "int, or auto (2 on a CPU-only host with 2 cores or more, 1 for "
        "pretrain or with a GPU).",
    )
    flags.DEFINE_enum(
        "strategy",
        "default",
        ["default", "mirrored", "multi_worker", "tpu"],
        "tf.distribute strategy: default (one device), mirrored (all local "
        "GPUs), multi_worker (machines listed in $TF_CONFIG) or tpu. The "
        "tasks of a meta-batch are split across replicas; --meta_batch must "
        "be a multiple of their number.",
    )


def given():
    """`({run field: value}, {option: value})` of the flags set on the
    command line."""
    run = {
        field.name: FLAGS[field.name].value
        for field in RunConfig.fields()
        if FLAGS[field.name].present
    }
    options = {
        name: FLAGS[name].value
        for name in option_owners()
        if FLAGS[name].present
    }
    return run, options


HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def parse_with_exit_2(argv):
    """absl's flag parsing, but a bad flag exits with code 2 (usage) and a
    help flag with 0 (absl's own help flags exit 1)."""
    try:
        return FLAGS(argv)
    except SystemExit as e:
        if e.code == 1 and any(arg in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        print(
            f"Pass --helpfull to see every flag of {argv[0]}.", file=sys.stderr
        )
        sys.exit(USAGE_EXIT)


def run_app(main, argv=None):
    """`absl.app.run` of `main(argv) -> exit code`, bad flags exiting 2."""
    from absl import app

    app.run(
        lambda args: sys.exit(main(args)),
        argv=argv,
        flags_parser=parse_with_exit_2,
    )
