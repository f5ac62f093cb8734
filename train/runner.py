"""What every training script runs: resolve the settings, build data and
model from keras_meta, `fit` with checkpoints, evaluate with the papers'
protocol, and write the run folder:

    saved_models/<run>/
        config.json            the resolved settings
        checkpoint/            checkpoint.keras + checkpoint.json (resume)
        logs/                  TensorBoard
        history.csv            meta-train and meta-validation per evaluation
        model.keras            the final model (keras.models.load_model)
        saved_model/           SavedModel: one task in, adapted logits out
        results.json           test accuracy, 95% CI, settings, git revision
        learning_curve.png     loss/accuracy against iteration
        accuracy_vs_steps.png  test accuracy against adaptation steps
"""

import json
import math
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import time

from absl import flags, logging

from train import common_flags
from train.datasets import EVAL_META_BATCH, make_data
from train.presets import PRESETS

FLAGS = flags.FLAGS
REPO = pathlib.Path(__file__).resolve().parents[1]
ALGORITHMS = ("maml", "anil", "reptile", "pretrain")
MAX_CURVE_STEPS = 10

DEFAULTS = dict(
    dataset="omniglot",
    ways=5,
    shots=1,
    train_shots=None,
    queries=15,
    eval_queries=15,
    meta_batch=32,
    inner_lr=0.4,
    inner_steps=1,
    eval_inner_steps=None,
    inner_optimizer="sgd",
    head_layers=1,
    first_order=False,
    meta_lr=1e-3,
    meta_optimizer="adam",
    meta_lr_schedule="constant",
    batch_size=256,
    iterations=10000,
    eval_every=500,
    val_tasks=100,
    eval_tasks=600,
    curve_tasks=200,
    checkpoint_every=500,
    bn_mode="transductive",
    filters=64,
    pooling="stride",
    seed=0,
    data_dir=None,
    manual_dir=None,
    image_size=None,
)
ALGORITHM_DEFAULTS = {
    "reptile": dict(
        inner_steps=5,
        eval_inner_steps=50,
        inner_lr=0.001,
        inner_optimizer="adam",
        meta_optimizer="sgd",
        meta_lr=1.0,
        meta_lr_schedule="linear",
    ),
    "pretrain": dict(inner_lr=0.1, eval_inner_steps=100),
}
SINUSOID_DEFAULTS = dict(
    shots=10,
    queries=10,
    eval_queries=10,
    meta_batch=25,
    inner_lr=0.01,
    iterations=70000,
)
CHOICES = dict(
    inner_optimizer=("sgd", "adam"),
    meta_optimizer=("adam", "sgd"),
    meta_lr_schedule=("constant", "linear"),
    bn_mode=("transductive", "non_transductive"),
    pooling=("max", "stride"),
)
ONLY_FOR = dict(
    first_order="maml",
    inner_optimizer="reptile",
    head_layers="anil",
)


class UsageError(Exception):
    """Bad flags: reported on stderr with exit code 2."""


# -- settings -------------------------------------------------------------


def resolve_config(algorithm):
    """Defaults < algorithm/dataset defaults < preset < explicit flags."""
    given = {
        name: FLAGS[name].value
        for name in common_flags.RUN_FLAGS
        if FLAGS[name].present
    }
    preset = {}
    if FLAGS.preset is not None:
        if FLAGS.preset not in PRESETS:
            raise UsageError(
                f"Unknown preset {FLAGS.preset!r}; choose one of "
                f"{', '.join(PRESETS)}."
            )
        preset = {
            k: v for k, v in PRESETS[FLAGS.preset].items() if k != "source"
        }
        wanted = preset.pop("algorithm")
        if wanted != algorithm:
            raise UsageError(
                f"Preset {FLAGS.preset!r} is for train.{wanted}, not "
                f"train.{algorithm}."
            )
    for name in given:
        owner = ONLY_FOR.get(name)
        if owner and owner != algorithm and given[name] not in (None, False):
            raise UsageError(
                f"--{name} applies to train.{owner} only, not "
                f"train.{algorithm}."
            )
    config = dict(DEFAULTS)
    config.update(ALGORITHM_DEFAULTS.get(algorithm, {}))
    dataset = given.get("dataset", preset.get("dataset", config["dataset"]))
    if dataset == "sinusoid":
        config.update(SINUSOID_DEFAULTS)
    config.update(preset)
    config.update(given)
    config["algorithm"] = algorithm
    if config["eval_inner_steps"] is None:
        config["eval_inner_steps"] = config["inner_steps"]
    if config["train_shots"] is None:
        config["train_shots"] = config["shots"]
    for name, choices in CHOICES.items():
        if config[name] not in choices:
            raise UsageError(
                f"--{name}={config[name]!r} is not one of {choices}."
            )
    for name in (
        "ways",
        "shots",
        "train_shots",
        "queries",
        "eval_queries",
        "meta_batch",
        "iterations",
        "eval_every",
        "val_tasks",
        "eval_tasks",
        "curve_tasks",
        "checkpoint_every",
        "batch_size",
        "filters",
    ):
        if config[name] < 1:
            raise UsageError(f"--{name} must be >= 1, got {config[name]}.")
    if config["inner_lr"] <= 0 or config["meta_lr"] <= 0:
        raise UsageError("--inner_lr and --meta_lr must be positive.")
    if FLAGS.resume and FLAGS.overwrite:
        raise UsageError("--resume and --overwrite contradict each other.")
    return config


STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def set_task_parallelism(value, algorithm):
    """Applies --task_parallelism (before TensorFlow starts, as it must)."""
    from keras_meta import config as keras_meta_config

    if value == "auto":
        tasks = 1 if algorithm == "pretrain" else "auto"
    else:
        try:
            tasks = int(value)
        except ValueError:
            raise UsageError(
                f"--task_parallelism={value!r} is neither a positive int nor "
                "auto."
            ) from None
        if tasks < 1:
            raise UsageError(f"--task_parallelism={value} must be at least 1.")
    return keras_meta_config.set_task_parallelism(tasks)


def make_strategy(name):
    """The `tf.distribute` strategy named by --strategy (created before any
    other TensorFlow work, as multi-worker training requires)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UsageError(f"--strategy={name!r} is not one of {STRATEGIES}.")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UsageError(
                "--strategy=multi_worker reads the cluster from $TF_CONFIG; "
                "set it on every worker (see the README)."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run folder (worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def default_data_dir():
    """`../shared/data/tfds` beside the repository when it is there."""
    if "TFDS_DATA_DIR" in os.environ:
        return None
    shared = REPO.parent / "shared" / "data" / "tfds"
    return str(shared) if shared.is_dir() else None


def run_name(config):
    if FLAGS.run_name:
        return FLAGS.run_name
    if FLAGS.preset:
        return FLAGS.preset
    dataset = pathlib.Path(config["dataset"]).name or "data"
    if dataset == "sinusoid":
        return f"{config['algorithm']}_sinusoid_{config['shots']}shot"
    return (
        f"{config['algorithm']}_{dataset}_{config['ways']}w{config['shots']}s"
    )


def prepare_output_dir(path):
    """Checks the run folder against --resume/--overwrite."""
    holds_files = path.exists() and any(path.iterdir())
    if FLAGS.resume:
        if not (path / "checkpoint" / "checkpoint.json").exists():
            raise UsageError(
                f"--resume: {path} holds no checkpoint to resume from."
            )
        return
    if holds_files:
        if not FLAGS.overwrite:
            raise UsageError(
                f"{path} holds another run. Pass --resume to continue it, "
                "--overwrite to replace it, or choose --output_dir/--run_name."
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


# -- data and model ---------------------------------------------------------


def make_model(config, train_data):
    import keras

    import keras_meta

    algorithm = config["algorithm"]
    regression = config["dataset"] == "sinusoid"
    if regression:
        learner = keras_meta.models.mlp()
    else:
        spec = train_data.element_spec
        image_spec = spec[0] if algorithm == "pretrain" else spec[0]["query_x"]
        outputs = (
            train_data.num_classes
            if algorithm == "pretrain"
            else config["ways"]
        )
        learner = keras_meta.models.conv4(
            outputs,
            tuple(image_spec.shape[-3:]),
            config["filters"],
            config["pooling"],
        )
    common = dict(
        inner_lr=config["inner_lr"],
        eval_inner_steps=config["eval_inner_steps"],
        bn_mode=config["bn_mode"],
    )
    if algorithm == "maml":
        model = keras_meta.MAML(
            learner,
            inner_steps=config["inner_steps"],
            first_order=config["first_order"],
            **common,
        )
    elif algorithm == "anil":
        model = keras_meta.ANIL(
            learner,
            inner_steps=config["inner_steps"],
            head_layers=config["head_layers"],
            **common,
        )
    elif algorithm == "reptile":
        model = keras_meta.Reptile(
            learner,
            inner_steps=config["inner_steps"],
            inner_optimizer=config["inner_optimizer"],
            **common,
        )
    else:
        model = keras_meta.Pretrain(
            learner,
            ways=None if regression else config["ways"],
            adaptation="fine_tune" if regression else "fresh_head",
            **common,
        )
    learning_rate = config["meta_lr"]
    if config["meta_lr_schedule"] == "linear":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, config["iterations"], end_learning_rate=0.0
        )
    optimizer = (
        keras.optimizers.Adam(learning_rate)
        if config["meta_optimizer"] == "adam"
        else keras.optimizers.SGD(learning_rate)
    )
    model.compile(
        optimizer=optimizer,
        loss=(
            "mse"
            if regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        ),
        metrics=[] if regression else ["accuracy"],
    )
    return model


# -- the run ------------------------------------------------------------------


def git_revision():
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "describe",
                "--always",
                "--dirty",
                "--abbrev=40",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def fit(model, config, out, start):
    """Meta-trains from iteration `start` to `config["iterations"]`, in
    epochs of `eval_every` iterations; returns False if interrupted."""
    import keras

    import keras_meta

    total, every = config["iterations"], config["eval_every"]
    validation = (
        make_data(config, "val")
        .take(math.ceil(config["val_tasks"] / EVAL_META_BATCH))
        .cache()
    )
    checkpoint = keras_meta.callbacks.MetaCheckpoint(
        out / "checkpoint", config["checkpoint_every"]
    )
    callbacks = [
        checkpoint,
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras_meta.callbacks.EvaluationSummary(),
    ]
    episodic = config["algorithm"] != "pretrain"
    epochs = math.ceil(total / every)
    iteration = start
    try:
        while iteration < total:
            # One fit call for the run of whole epochs ahead; a partial
            # epoch (after a resume, or at the end) gets its own call.
            epoch = iteration // every
            if iteration % every or (epoch + 1) * every > total:
                steps = min((epoch + 1) * every, total) - iteration
                last_epoch = epoch + 1
            else:
                steps = every
                last_epoch = min(epochs, total // every)
            train = make_data(
                config, "train", episodic=episodic, start=iteration
            )
            model.fit(
                train,
                initial_epoch=epoch,
                epochs=last_epoch,
                steps_per_epoch=steps,
                validation_data=validation,
                callbacks=callbacks,
                verbose=FLAGS.verbose,
            )
            iteration = int(model.optimizer.iterations.numpy())
    except KeyboardInterrupt:
        at = checkpoint.save()
        print(
            f"\nInterrupted at iteration {at}; checkpoint written. "
            "Continue with the same command and --resume.",
            file=sys.stderr,
        )
        return False
    checkpoint.save()
    return True


def evaluate_and_write(model, config, out, wall_start, training=None):
    import keras_meta
    from keras_meta import plots

    test = make_data(config, "test")
    result = keras_meta.evaluate_few_shot(model, test, config["eval_tasks"])
    ways = None if config["dataset"] == "sinusoid" else config["ways"]
    print(f"meta-test {result.describe(ways, config['shots'])}")

    steps = list(range(MAX_CURVE_STEPS + 1))
    curve = [
        keras_meta.evaluate_few_shot(
            model,
            test,
            config["curve_tasks"],
            inner_steps=k,
        )
        for k in steps
    ]
    plots.score_by_steps(
        steps,
        [r.mean for r in curve],
        [r.ci95 for r in curve],
        out / "accuracy_vs_steps.png",
        metric=result.metric,
        title=f"{run_name(config)}: test {result.metric} against steps",
    )
    history = plots.read_history(out / "history.csv")
    if "epoch" in history:
        iterations = [
            min((int(e) + 1) * config["eval_every"], config["iterations"])
            for e in history["epoch"]
        ]
        plots.learning_curve(
            history,
            iterations,
            out / "learning_curve.png",
            metric="accuracy" if result.metric == "accuracy" else "loss",
            title=run_name(config),
        )
    model.save(out / "model.keras")
    model.export(out / "saved_model")
    results = {
        "run": run_name(config),
        "algorithm": config["algorithm"],
        "config": config,
        "git_revision": git_revision(),
        "test": {
            **result.as_dict(),
            "summary": result.describe(ways, config["shots"]),
        },
        "test_by_steps": [
            {"steps": k, "mean": r.mean, "ci95": r.ci95}
            for k, r in zip(steps, curve)
        ],
        "bn_mode": result.bn_mode,
        "num_test_tasks": result.num_tasks,
        "wall_time_seconds": time.time() - wall_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        **(training or {}),
    }
    if training and config["algorithm"] != "pretrain":
        results["tasks_per_second"] = (
            training["iterations_trained"]
            * config["meta_batch"]
            / max(training["train_seconds"], 1e-9)
        )
    from keras_meta.atomic import atomic_path

    with atomic_path(out / "results.json") as staged, open(staged, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Wrote {out}")
    return results


def run(algorithm):
    """The whole script: returns the process exit code."""
    wall_start = time.time()
    try:
        config = resolve_config(algorithm)
        if config["data_dir"] is None:
            config["data_dir"] = default_data_dir()
        out = pathlib.Path(
            FLAGS.output_dir or os.path.join("saved_models", run_name(config))
        )
        set_task_parallelism(FLAGS.task_parallelism, algorithm)
        strategy = make_strategy(FLAGS.strategy)
        if config["meta_batch"] % strategy.num_replicas_in_sync:
            raise UsageError(
                f"--meta_batch={config['meta_batch']} does not split over "
                f"{strategy.num_replicas_in_sync} replicas: use a multiple."
            )
        run_dir = out  # read from (a resumed run), shared by all workers
        if is_chief(strategy):
            prepare_output_dir(out)
        else:
            # Other workers train in step with the chief; what they write
            # goes to a scratch folder.
            import tempfile

            out = pathlib.Path(tempfile.mkdtemp(prefix="keras_meta_worker_"))
        import keras
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notes of evaluation

        import keras_meta

        start = 0
        if FLAGS.resume:
            saved = json.loads((run_dir / "config.json").read_text())
            if FLAGS["iterations"].present:
                saved["iterations"] = FLAGS.iterations
            config = saved
            with strategy.scope():
                model, state = keras_meta.callbacks.load_checkpoint(
                    run_dir / "checkpoint"
                )
            start = state["iteration"]
            print(f"Resuming {run_dir} at iteration {start}")
        else:
            keras.utils.set_random_seed(config["seed"])
            (out / "config.json").write_text(json.dumps(config, indent=2))
            episodic = algorithm != "pretrain"
            with strategy.scope():
                model = make_model(
                    config, make_data(config, "train", episodic=episodic)
                )
        fit_start = time.time()
        if not fit(model, config, out, start):
            return 130
        training = {
            "train_seconds": time.time() - fit_start,
            "iterations_trained": config["iterations"] - start,
        }
        evaluate_and_write(model, config, out, wall_start, training)
        return 0
    except (UsageError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(algorithm):
    """Entry point of `python -m train.<algorithm>`."""
    from absl import app

    def app_main(argv):
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
            sys.exit(2)
        logging.set_verbosity(logging.WARNING)
        sys.exit(run(algorithm))

    app.run(app_main)
