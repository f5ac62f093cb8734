"""Test a finished run under other protocols: `keras-meta evaluate` (or
`python -m train.evaluate`).

    python -m train.evaluate --run=saved_models/quick --protocol=reptile

Loads the run's tested model (`model.keras`), tests it under each protocol
named (each of its batch-norm modes, on the protocol's own test tasks) and
adds the results to `results.json` under `"evaluations"`, each with its
per-task scores and the git revision that tested it. The run's headline
result is left as it is. A protocol the run already reports is skipped
unless `--redo`. Exit codes: 0 done, 1 a score that is not finite, 2 a
usage error (nothing written).
"""

import dataclasses
import json
import pathlib
import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "The run folder (with results.json).")
flags.DEFINE_string(
    "protocol",
    None,
    "Protocols to test under, comma-separated (maml, reptile, mamlpp, "
    "15_queries).",
)
flags.DEFINE_integer(
    "eval_tasks",
    None,
    "Test tasks per protocol (default: each protocol's own count).",
    lower_bound=1,
)
flags.DEFINE_string("data_dir", None, "TFDS data folder (default: the run's).")
flags.DEFINE_boolean(
    "redo", False, "Test again under protocols the run already reports."
)


def require_files(run_dir, names):
    """A `UsageError` naming those of `names` that `run_dir` lacks."""
    from keras_meta.cli.errors import UsageError

    missing = [name for name in names if not (run_dir / name).exists()]
    if missing:
        raise UsageError(
            f"{run_dir} is not a finished run: it has no {', '.join(missing)}."
        )


def load_run(run_dir):
    """`(config, results)` of a finished run, or a `UsageError`. Its model
    is not needed: a run kept as its small files (the model not committed)
    still says what it reports."""
    from keras_meta.cli.errors import UsageError
    from keras_meta.cli.run_config import RunConfig

    require_files(run_dir, ("config.json", "results.json"))
    try:
        config = RunConfig.from_dict(
            json.loads((run_dir / "config.json").read_text())
        )
        results = json.loads((run_dir / "results.json").read_text())
    except (ValueError, TypeError) as e:
        raise UsageError(f"{run_dir}: unreadable run files ({e}).") from e
    return config, results


def evaluate_run(run_dir, names, eval_tasks=None, data_dir=None, redo=False):
    """Adds the evaluations under `names` (comma-separated protocols) to the
    run's results.json; returns the keys added."""
    import keras
    import tensorflow as tf

    from keras_meta import protocols
    from keras_meta.cli import report
    from keras_meta.cli.errors import UsageError
    from keras_meta.cli.run_folder import RunFolder

    try:
        wanted = protocols.parse(names)
    except ValueError as e:
        raise UsageError(str(e)) from e
    run_dir = pathlib.Path(run_dir)
    config, results = load_run(run_dir)
    RunFolder(run_dir).lock()  # no training or other test writes it now
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    done = results.get("evaluations", {})
    todo = [
        p
        for p in wanted
        if redo or any(f"{p.name}/{m}" not in done for m in p.bn_modes)
    ]
    if not todo:
        print(f"{run_dir} already reports {names}: nothing to do.")
        return []
    require_files(run_dir, ("model.keras",))  # testing needs the model
    tf.get_logger().setLevel("ERROR")
    model = keras.models.load_model(run_dir / "model.keras")
    records = report.evaluate_protocols(model, config, todo, eval_tasks)
    results = json.loads((run_dir / "results.json").read_text())
    results["evaluations"] = {**results.get("evaluations", {}), **records}
    RunFolder.write_json(run_dir / "results.json", results)
    print(f"Wrote {run_dir / 'results.json'}")
    return list(records)


def main(argv):
    from absl import logging

    from keras_meta.cli.errors import TrainingFailed, UsageError

    logging.set_verbosity(logging.WARNING)

    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if not FLAGS.run or not FLAGS.protocol:
        print("error: --run and --protocol are required.", file=sys.stderr)
        return 2
    try:
        evaluate_run(
            FLAGS.run,
            FLAGS.protocol,
            FLAGS.eval_tasks,
            FLAGS.data_dir,
            FLAGS.redo,
        )
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run(argv=None):
    """Entry point (`python -m train.evaluate`, `keras-meta evaluate`)."""
    from keras_meta.cli.flags import run_app

    run_app(main, argv)
