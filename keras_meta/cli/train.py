"""`train.<algorithm>` / `keras-meta train <algorithm>`: one training run.

Settings come from one `RunConfig` (defaults < algorithm defaults < preset
< flags); every setting, the data and the model are checked before the run
folder is touched; then training, the papers' test protocol and the run
folder's files (`run_folder.py`). Exit codes: 0 done (or nothing to do),
1 training failed (non-finite loss), 2 usage error, 128 + the signal when
stopped by Ctrl-C (130) or SIGTERM (143).
"""

import dataclasses
import json
import pathlib
import signal
import sys
import tempfile
import time

import keras
from absl import app, logging

import keras_meta
from keras_meta.cli import datasets, loop, presets, report, runtime
from keras_meta.cli import flags as run_flags
from keras_meta.cli.errors import TrainingFailed, UsageError
from keras_meta.cli.registry import ALGORITHMS, build_model, option_owners
from keras_meta.cli.run_config import RunConfig
from keras_meta.cli.run_folder import RunFolder

FLAGS = run_flags.FLAGS


def not_for(flag, owners, algorithm):
    """The error for a flag given to a script it does not apply to."""
    scripts = [f"train.{o}" for o in owners]
    if len(scripts) > 1:
        scripts = [", ".join(scripts[:-1]), scripts[-1]]
    scripts = " and ".join(scripts)
    return f"--{flag} applies to {scripts} only, not train.{algorithm}."


def resolve_config(algorithm):
    """The run's `RunConfig` from defaults, preset and the flags given."""
    entry = ALGORITHMS[algorithm]
    given, given_options = run_flags.given()
    preset = {}
    if FLAGS.preset is not None:
        preset = presets.settings(FLAGS.preset)
        wanted = preset.pop("algorithm")
        if wanted != algorithm:
            raise UsageError(
                f"Preset {FLAGS.preset!r} is for train.{wanted}, not "
                f"train.{algorithm}."
            )
    for name, value in given.items():
        only = RunConfig.__dataclass_fields__[name].metadata["only"]
        if only and algorithm not in only and value not in (None, False):
            raise UsageError(not_for(name, only, algorithm))
    ours = {o.name: o for o in entry.options}
    owners = option_owners()
    for name in given_options:
        if name not in ours:
            raise UsageError(not_for(name, owners[name], algorithm))
    preset_options = {k: v for k, v in preset.items() if k in ours}
    options = {
        **{name: o.default for name, o in ours.items()},
        **preset_options,
        **{k: ours[k].parse(v) for k, v in given_options.items()},
    }
    values = {
        **entry.run_defaults,
        **{k: v for k, v in preset.items() if k not in ours},
        **given,
        "algorithm": algorithm,
        "options": options,
    }
    try:
        config = RunConfig(**values).resolved().check()
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from e
    if config.train_ways not in (None, config.ways) and not entry.embedding:
        raise UsageError(
            f"--train_ways={config.train_ways} differs from --ways="
            f"{config.ways}, but train.{algorithm}'s learner has one output "
            "per class: it trains and tests on N-way tasks of one N. "
            "(ProtoNet and Proto-MAML take any N up to their ways.)"
        )
    return config


def resumed_config(folder):
    """`(config, state)` of the run to resume; `--iterations` and
    `--minutes` given now extend it."""
    config, state = folder.resume_state()
    given, _ = run_flags.given()
    extend = {k: given[k] for k in ("iterations", "minutes") if k in given}
    return dataclasses.replace(config, **extend), state


def training_done(config, state):
    """Whether a resumed run's training is over (its iterations, or its
    time budget, spent): what is left is the test and the report."""
    if state is None:
        return False
    if state["iteration"] >= config.iterations:
        return True
    spent = state.get("train_seconds", 0.0)
    return config.minutes is not None and spent >= 60 * config.minutes


def finished(config, state, folder):
    """Whether a resumed run has nothing left to do."""
    return folder.results.exists() and training_done(config, state)


def locate(algorithm):
    """`(name, folder, config, state)`: the run's name and folder, and its
    settings (a resumed run's own, with its checkpoint state)."""
    if FLAGS.resume and FLAGS.overwrite:
        raise UsageError("--resume and --overwrite contradict each other.")
    config = resolve_config(algorithm)
    name = report.run_name(config, FLAGS.run_name, FLAGS.preset)
    folder = RunFolder(FLAGS.output_dir or pathlib.Path("saved_models", name))
    if not FLAGS.resume:
        folder.check_new(FLAGS.overwrite)
        return name, folder, config, None
    config, state = resumed_config(folder)
    return folder.path.name, folder, config, state


def prepare(config, state, folder):
    """Checks the data and builds (or reloads) the model before anything is
    written: `(config, state, model, strategy)`; `UsageError` on bad input."""
    runtime.set_task_parallelism(FLAGS.task_parallelism, config.algorithm)
    strategy = runtime.make_strategy(FLAGS.strategy)
    if config.meta_batch % strategy.num_replicas_in_sync:
        raise UsageError(
            f"--meta_batch={config.meta_batch} does not split over "
            f"{strategy.num_replicas_in_sync} replicas: use a multiple."
        )
    check_data(config)
    with strategy.scope():
        if state is not None:
            model, state = keras_meta.callbacks.load_checkpoint(
                folder.checkpoint_dir
            )
            return config, state, model, strategy
        keras.utils.set_random_seed(config.seed)
        episodic = ALGORITHMS[config.algorithm].episodic
        train = datasets.make_data(config, "train", episodic=episodic)
        return config, state, build_model(config, train), strategy


def check_data(config):
    """Makes the validation and every protocol's test episodes, whose
    loaders check the splits (classes against ways, images per class
    against shots + queries), so that a data problem stops the run before
    it trains, not after."""
    try:
        datasets.make_data(config, "val")
    except ValueError as e:
        raise UsageError(
            f"meta-validation (--shots={config.shots}, --eval_queries="
            f"{config.eval_queries}): {e}"
        ) from None
    for protocol in config.test_protocols():
        try:
            datasets.test_data(config, protocol)
        except ValueError as e:
            raise UsageError(
                f"the test ({protocol.describe(config.shots)}; --protocol "
                f"chooses another): {e}"
            ) from None


def verbosity():
    """--verbose, or when it is not given: Keras's live bar on a terminal,
    one line per epoch (per --eval_every iterations) elsewhere (a log
    file, CI, a batch scheduler), where the bar's redraws pile up."""
    if FLAGS.verbose is not None:
        return FLAGS.verbose
    return 1 if sys.stdout.isatty() else 2


def run(algorithm):
    """The whole script; returns the process exit code."""
    wall_start = time.time()
    if FLAGS.print_config:
        try:
            print(json.dumps(resolve_config(algorithm).as_dict(), indent=2))
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return run_flags.USAGE_EXIT
        return 0
    try:
        name, folder, config, state = locate(algorithm)
        if state is not None and finished(config, state, folder):
            print(
                f"{folder.path} is finished (iteration {state['iteration']}):"
                " nothing to do. Pass a larger --iterations to train further."
            )
            return 0
        config, state, model, strategy = prepare(config, state, folder)
        if not runtime.is_chief(strategy):
            # Other workers train in step with the chief; what they write
            # goes to a scratch folder.
            folder = RunFolder(tempfile.mkdtemp(prefix="keras_meta_worker_"))
        elif state is None:
            folder.create(config, FLAGS.overwrite)  # takes the folder's lock
        else:
            folder.lock()  # before anything of the run is rewritten
            print(f"Resuming {folder.path} at iteration {state['iteration']}")
    except (UsageError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return run_flags.USAGE_EXIT
    try:
        stopped_by, seconds = loop.train(
            model,
            config,
            folder,
            state,
            verbose=verbosity(),
            snapshots=FLAGS.keep_snapshots,
        )
        iteration = int(model.optimizer.iterations.numpy())
        if stopped_by is not None:
            print(
                f"\nStopped by {signal.Signals(stopped_by).name} at "
                f"iteration {iteration}; checkpoint written. Continue with "
                "the same command and --resume.",
                file=sys.stderr,
            )
            return 128 + stopped_by
        training = {"train_seconds": seconds, "iterations_trained": iteration}
        report.evaluate_and_write(
            model, config, folder, name, wall_start, training
        )
    except TrainingFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(algorithm, argv=None):
    """Entry point of `python -m train.<algorithm>`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {algorithm!r}.")
    run_flags.define(algorithm)

    def app_main(argv):
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
            sys.exit(run_flags.USAGE_EXIT)
        logging.set_verbosity(logging.WARNING)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notes of evaluation
        sys.exit(run(algorithm))

    app.run(app_main, argv=argv, flags_parser=run_flags.parse_with_exit_2)
