"""Meta-training throughput and peak memory of every algorithm.

Trains each algorithm through the public API, the way a user does
(`compile(optimizer="adam", ...)`, then `fit`), on synthetic episodes of the
right shape, and reports tasks per second (the median over timed
meta-iterations after warm-up) and the peak resident memory of the process.
Each (algorithm, configuration) runs in a fresh subprocess, so that peak
memory is its own.

    python benchmarks/throughput.py                      # the table
    python benchmarks/throughput.py --json out.json      # and a JSON copy
    python benchmarks/throughput.py --only maml --configs omniglot_5w1s_max
    python benchmarks/throughput.py --learn2learn_python ../l2l-env/bin/python

The last form measures learn2learn's row of each cell just before ours
(`learn2learn_reference.py`, in a virtual environment of its own) and
prints the speed-up from that one run. This machine's speed drifts by tens
of percent over minutes, so the published speed-ups come from alternating
rounds instead: both processes kept alive, `--iterations` iterations of
each in turn, `--rounds` times, the speed-up the median of the rounds'
ratios (`--versus_env` compares ours with ours under an environment
variable the same way):

    python benchmarks/throughput.py --rounds 4 --iterations 2 \\
        --learn2learn_python ../l2l-env/bin/python
    python benchmarks/throughput.py --rounds 4 --iterations 2 \\
        --versus_env KERAS_META_TF_THREADS=keep

Time it on an idle machine: any other busy process distorts the figures.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {
    # name: (ways, shots, queries, tasks, image shape, filters, pooling,
    #        inner steps, Reptile inner steps)
    "omniglot_5w1s_max": (5, 1, 15, 32, (28, 28, 1), 64, "max", 1, 5),
    "omniglot_5w1s_stride": (5, 1, 15, 32, (28, 28, 1), 64, "stride", 1, 5),
    "omniglot_20w1s_max": (20, 1, 15, 16, (28, 28, 1), 64, "max", 5, 5),
    "omniglot_20w1s_stride": (20, 1, 15, 16, (28, 28, 1), 64, "stride", 5, 5),
    "miniimagenet_5w1s": (5, 1, 15, 4, (84, 84, 3), 32, "max", 5, 5),
    # The memory sweep's, 4 tasks: peak memory depends on the tasks in
    # flight (2), not on the meta-batch, and long sweeps run 8x sooner.
    "omniglot_5w1s_max_4tasks": (5, 1, 15, 4, (28, 28, 1), 64, "max", 1, 5),
}
# The memory sweep: second-order MAML with more inner steps, with and
# without rematerialisation, and iMAML (implicit meta-gradients).
SWEEP_STEPS = (1, 5, 10)
ALGORITHMS = (
    "maml",
    "fomaml",
    "anil",
    "reptile",
    "pretrain",
    "metasgd",
    "mamlpp",
    "boil",
    "protonet",
)
REFERENCE_SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "learn2learn_reference.py"
)


def with_keras_batch_norm(learner):
    """`learner` with Keras's own BatchNormalization in place of keras_meta's
    (conv4's): the composite ops, to measure what the fused kernel saves."""
    import keras

    import keras_meta

    def clone(layer):
        if isinstance(layer, keras_meta.layers.BatchNormalization):
            return keras.layers.BatchNormalization.from_config(
                layer.get_config()
            )
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(learner, clone_function=clone)


def build(
    algorithm, config, inner_steps=None, recompute="auto", batch_norm="fused"
):
    import keras

    import keras_meta

    ways, shots, queries, tasks, shape, filters, pooling, steps, k = config
    steps = inner_steps or steps
    # Pretrain classifies 64 training classes, ProtoNet embeds (no head),
    # the meta-learners give N logits.
    outputs = {"pretrain": 64, "protonet": None}.get(algorithm, ways)
    learner = keras_meta.models.conv4(outputs, shape, filters, pooling)
    if batch_norm == "keras":
        learner = with_keras_batch_norm(learner)
    if algorithm == "pretrain":
        model = keras_meta.Pretrain(learner, ways=ways)
    else:
        model = {
            "maml": lambda: keras_meta.MAML(
                learner, 0.4, steps, recompute=recompute
            ),
            "fomaml": lambda: keras_meta.MAML(
                learner, 0.4, steps, first_order=True
            ),
            "anil": lambda: keras_meta.ANIL(learner, 0.4, steps),
            "reptile": lambda: keras_meta.Reptile(
                learner, 0.001, k, inner_optimizer="adam"
            ),
            "metasgd": lambda: keras_meta.MetaSGD(learner, 0.4, steps),
            "mamlpp": lambda: keras_meta.MAMLPlusPlus(
                learner, 0.4, steps, recompute=recompute is True
            ),
            # The paper's Omniglot settings but the steps (16 there).
            "imaml": lambda: keras_meta.IMAML(learner, 0.1, steps),
            # The authors' body step (0.5), the head frozen in the inner loop.
            "boil": lambda: keras_meta.BOIL(learner, 0.5, steps),
            "protonet": lambda: keras_meta.ProtoNet(learner, ways=ways),
        }[algorithm]()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def synthetic_data(algorithm, config):
    import numpy as np
    import tensorflow as tf

    ways, shots, queries, tasks, shape, *_ = config
    if algorithm == "reptile":
        # Reptile's inner steps see support and query images alike (as in
        # the learn2learn reference): N * (K + Q) images per step.
        shots = shots + queries
    rng = np.random.default_rng(0)
    if algorithm == "pretrain":
        # The same images per step as a meta-batch: T * N * (K + Q).
        batch = tasks * ways * (shots + queries)
        data = (
            rng.random((batch, *shape), dtype=np.float32),
            rng.integers(0, 64, batch),
        )
    else:
        data = (
            {
                "support_x": rng.random(
                    (tasks, ways * shots, *shape), dtype=np.float32
                ),
                "support_y": np.tile(
                    np.repeat(np.arange(ways), shots), (tasks, 1)
                ),
                "query_x": rng.random(
                    (tasks, ways * queries, *shape), dtype=np.float32
                ),
            },
            np.tile(np.repeat(np.arange(ways), queries), (tasks, 1)),
        )
    return tf.data.Dataset.from_tensors(data).repeat().prefetch(2)


def measure(
    algorithm,
    config_name,
    warmup,
    iterations,
    inner_steps=None,
    recompute="auto",
    tasks_per_group="default",
    batch_norm="fused",
    serving=False,
):
    """Runs in the subprocess: returns a dict of figures. With `serving`,
    the timed iterations are those the parent asks for (`serve`)."""
    import keras
    import tensorflow as tf

    from keras_meta.config import (
        onednn_enabled,
        private_pool_threads,
        task_parallelism,
    )

    import_rss_mib = peak_rss_mib()  # TensorFlow, Keras and keras_meta
    config = CONFIGS[config_name]
    model = build(algorithm, config, inner_steps, recompute, batch_norm)
    if tasks_per_group == "off":
        model.vectorize_tasks = False
    elif tasks_per_group != "default":
        model.vectorize_tasks = True
        model.tasks_per_group = int(tasks_per_group)
    data = synthetic_data(algorithm, config)

    def run(count):
        """`count` meta-iterations of `fit`: their wall and CPU times."""
        times, cpu_times = [], []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.start = time.perf_counter()
                self.cpu_start = time.process_time()

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter() - self.start)
                cpu_times.append(time.process_time() - self.cpu_start)

        model.fit(data, steps_per_epoch=count, verbose=0, callbacks=[Timer()])
        return times, cpu_times

    start = time.perf_counter()
    if serving:
        times, cpu_times = serve(run, warmup)
        warmup = 0
    else:
        times, cpu_times = run(warmup + iterations)
    total = time.perf_counter() - start
    timing = timing_figures(times, cpu_times, warmup)
    tasks = config[3]
    return {
        "algorithm": algorithm,
        "config": config_name,
        **timing,
        "tasks_per_second": tasks / timing["seconds_per_iteration"],
        "peak_rss_mib": peak_rss_mib(),
        "import_rss_mib": import_rss_mib,
        "first_iterations_seconds": total - sum(times[warmup:]),
        "inner_steps": inner_steps
        or config[7 if algorithm != "reptile" else 8],
        "recompute": algorithm in ("maml", "mamlpp")
        and (
            model.recompute is True
            or (model.recompute == "auto" and model.inner_steps > 1)
        ),
        "tasks_in_flight": task_parallelism(),
        # Tasks run together under tf.vectorized_map (None: one by one).
        "tasks_per_group": getattr(model, "tasks_per_group", None)
        if getattr(model, "vectorize_tasks", False)
        else None,
        "dtype_policy": keras.config.dtype_policy().name,
        "threads_per_op": tf.config.threading.get_intra_op_parallelism_threads()
        or "default",
        # Threads per op on the tasks' own pool (None: TensorFlow's pools).
        "own_pool_threads": None
        if algorithm == "pretrain"
        else private_pool_threads(),
        "onednn": onednn_enabled(),
        "batch_norm": batch_norm,
    }


def timing_figures(times, cpu_times, warmup):
    """An iteration's wall time, its work and how much of the machine it
    kept busy, from per-iteration wall times and process CPU times (every
    thread, user and system), medians after `warmup`. A speed-up over
    learn2learn is the ratio of the CPU times times the ratio of the cores
    busy: less work, or more of the machine used. Shared with
    `learn2learn_reference.py`."""
    seconds = statistics.median(times[warmup:])
    cpu_seconds = statistics.median(cpu_times[warmup:])
    return {
        "seconds_per_iteration": seconds,
        "cpu_seconds_per_iteration": cpu_seconds,
        "cores_busy": cpu_seconds / seconds,
    }


def peak_rss_mib():
    """The process's peak resident set so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(run, warmup):
    """The measuring child's side of `--rounds`: `run(warmup)`, then, for
    each count the parent writes on a line of stdin, `run(count)` and its
    times on stdout, until stdin closes. Returns every timed iteration's
    `(wall times, CPU times)`. Shared with `learn2learn_reference.py`."""
    run(warmup)
    print("READY", flush=True)
    times, cpu_times = [], []
    for line in sys.stdin:
        wall, cpu = run(int(line))
        times += wall
        cpu_times += cpu
        print("TIMES " + json.dumps([wall, cpu]), flush=True)
    return times, cpu_times


class Serving:
    """A measuring child kept alive (`--serve`) so that its iterations can
    alternate with another's, round after round."""

    def __init__(self, command, what, env=None):
        self.what = what
        self.log = tempfile.TemporaryFile("w+")  # TensorFlow's chatter
        self.process = subprocess.Popen(
            [*command, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self._expect("READY")

    def time(self, count):
        """`count` iterations now: `[wall times, CPU times]`."""
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return json.loads(self._expect("TIMES "))

    def finish(self):
        """Stops the child; returns its figures over every timed round."""
        self.process.stdin.close()
        result = json.loads(self._expect("RESULT "))
        self.process.wait()
        return result

    def _expect(self, prefix):
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :]
        self.process.wait()
        self.log.seek(0)
        sys.exit(f"{self.what} failed:\n{self.log.read()[-4000:]}")


def child_command(interpreter, script, algorithm, config_name, args):
    """The command line that measures one row in a fresh process."""
    return [
        interpreter,
        script,
        "--child",
        algorithm,
        config_name,
        "--warmup",
        str(args.warmup),
        "--iterations",
        str(args.iterations),
    ]


def child_result(command, what):
    """Runs one measuring subprocess; returns the figures it prints."""
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        sys.exit(f"{what} failed:\n{out.stderr}")
    return json.loads(line[0][len("RESULT ") :])


def our_command(algorithm, config_name, args, extra=()):
    """The command line that measures our row of a cell."""
    return [
        *child_command(sys.executable, __file__, algorithm, config_name, args),
        "--task_parallelism",
        args.task_parallelism,
        "--dtype_policy",
        args.dtype_policy,
        "--tasks_per_group",
        args.tasks_per_group,
        "--batch_norm",
        args.batch_norm,
        "--recompute",
        args.recompute,
        *extra,
    ]


def run_child(algorithm, config_name, args, extra=()):
    """Measures one row in a fresh process; returns its figures."""
    r = child_result(
        our_command(algorithm, config_name, args, extra),
        f"{algorithm} on {config_name}",
    )
    print_row(r)
    return r


def print_row(r):
    print(
        f"{r['config']:<24} {r['algorithm']:<9} k={r['inner_steps']:<3}"
        f"{' remat' if r['recompute'] else '      '} "
        f"{r['seconds_per_iteration']:7.3f} s/it "
        f"{r['tasks_per_second']:7.1f} tasks/s "
        f"{r['peak_rss_mib']:7.0f} MiB peak "
        f"{r['cores_busy']:4.2f} cores busy "
        + ("Keras batch norm " if r["batch_norm"] == "keras" else "")
        + f"({r['tasks_in_flight']} task(s) in flight"
        + (
            f", groups of {r['tasks_per_group']} vectorized)"
            if r.get("tasks_per_group")
            else ")"
        ),
        flush=True,
    )


def run_reference(algorithm, config_name, args, interpreter=None):
    """The learn2learn row of the same cell, measured by
    `learn2learn_reference.py` under an interpreter that has learn2learn
    (`--learn2learn_python` unless given)."""
    r = child_result(
        child_command(
            interpreter or args.learn2learn_python,
            REFERENCE_SCRIPT,
            algorithm,
            config_name,
            args,
        ),
        f"learn2learn {algorithm} on {config_name}",
    )
    print_reference_row(r)
    return r


def print_reference_row(r):
    print(
        f"{r['config']:<24} {'l2l ' + r['algorithm']:<16}"
        f"{r['seconds_per_iteration']:7.3f} s/it "
        f"{r['tasks_per_second']:7.1f} tasks/s "
        f"{r['peak_rss_mib']:7.0f} MiB peak "
        f"{r['cores_busy']:4.2f} cores busy (torch {r['torch']})",
        flush=True,
    )


def measure_row(algorithm, config_name, args):
    """Our row, beside learn2learn's when a reference is asked for: its
    row just before ours, or with `--rounds` both kept alive and timed in
    alternating rounds."""
    if args.versus_env:
        return interleaved_row(algorithm, config_name, args)
    if not args.learn2learn_python or algorithm == "pretrain":
        return run_child(algorithm, config_name, args)
    if args.rounds:
        return interleaved_row(algorithm, config_name, args)
    reference = run_reference(algorithm, config_name, args)
    row = run_child(algorithm, config_name, args)
    row["learn2learn"] = reference
    row["speedup"] = (
        reference["seconds_per_iteration"] / row["seconds_per_iteration"]
    )
    return compare_memory_and_work(row, reference)


def interleaved_row(algorithm, config_name, args):
    """Both rows of a cell from two processes kept alive: `--rounds`
    rounds of `--iterations` iterations each, the reference's and ours in
    turn (ABBA: each goes first in every other round), so that the
    machine's drift over minutes reaches both alike. The reference is
    learn2learn's row, or with `--versus_env VARIABLE=VALUE` ours with
    that environment variable set (`KERAS_META_TF_THREADS=keep`:
    TensorFlow's own threading). The speed-up is the median of the
    rounds' ratios of median iteration times."""
    if args.versus_env:
        variable, _, value = args.versus_env.partition("=")
        reference = Serving(
            our_command(algorithm, config_name, args),
            f"{algorithm} on {config_name} with {args.versus_env}",
            env={**os.environ, variable: value},
        )
    else:
        reference = Serving(
            child_command(
                args.learn2learn_python,
                REFERENCE_SCRIPT,
                algorithm,
                config_name,
                args,
            ),
            f"learn2learn {algorithm} on {config_name}",
        )
    ours = Serving(
        our_command(algorithm, config_name, args),
        f"{algorithm} on {config_name}",
    )
    ratios, work_ratios, rounds = [], [], []
    for round_ in range(args.rounds):
        order = [reference, ours] if round_ % 2 == 0 else [ours, reference]
        timed = {id(child): child.time(args.iterations) for child in order}
        (ref_wall, ref_cpu), (wall, cpu) = timed[id(reference)], timed[id(ours)]
        rounds.append({"reference": ref_wall, "ours": wall})
        ratios.append(statistics.median(ref_wall) / statistics.median(wall))
        work_ratios.append(statistics.median(ref_cpu) / statistics.median(cpu))
    reference, row = reference.finish(), ours.finish()
    if args.versus_env:
        print(f"{args.versus_env}:")
        print_row(reference)
        row["versus_env"] = {args.versus_env: reference}
    else:
        print_reference_row(reference)
        row["learn2learn"] = reference
    print_row(row)
    row["speedup"] = statistics.median(ratios)
    row["speedup_rounds"] = ratios
    row["rounds"] = rounds  # every timed iteration's seconds
    row["work_ratio_rounds"] = work_ratios
    print(
        f"{'':<24} rounds' speed-ups: " + " ".join(f"{r:.2f}" for r in ratios),
        flush=True,
    )
    return compare_memory_and_work(row, reference)


def compare_memory_and_work(row, reference):
    """Adds the work and memory ratios to `row` and prints them."""
    row["memory_ratio"] = row["peak_rss_mib"] / reference["peak_rss_mib"]
    row["work_ratio"] = (
        reference["cpu_seconds_per_iteration"]
        / row["cpu_seconds_per_iteration"]
    )
    against = (
        f"{next(iter(row['versus_env']))}'s"
        if "versus_env" in row
        else "learn2learn's"
    )
    line = (
        f"{'':<24} {row['speedup']:.2f}x {against} speed "
        f"({row['work_ratio']:.2f}x less CPU time per iteration, "
        f"{row['cores_busy'] / reference['cores_busy']:.2f}x the cores "
        f"busy), {row['memory_ratio']:.2f}x its peak memory"
    )
    if "import_rss_mib" in reference:
        # Training's own memory: each peak above its framework's import.
        row["memory_above_import_ratio"] = (
            row["peak_rss_mib"] - row["import_rss_mib"]
        ) / (reference["peak_rss_mib"] - reference["import_rss_mib"])
        line += (
            f", {row['memory_above_import_ratio']:.2f}x above the imports "
            f"({row['peak_rss_mib'] - row['import_rss_mib']:.0f} against "
            f"{reference['peak_rss_mib'] - reference['import_rss_mib']:.0f}"
            " MiB)"
        )
    print(line, flush=True)
    return row


def cpu_model():
    """The CPU's model name (Linux), else what `platform` knows: speed
    differs between hosts of one kind, and TensorFlow's oneDNN default
    with the CPU's features."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", nargs="*", default=list(ALGORITHMS), choices=ALGORITHMS
    )
    parser.add_argument(
        "--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS)
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument(
        "--memory_sweep",
        action="store_true",
        help="add second-order MAML with and without recompute, and iMAML, "
        "at each of --sweep_steps inner steps",
    )
    parser.add_argument(
        "--sweep_steps",
        type=int,
        nargs="*",
        default=list(SWEEP_STEPS),
        help="the memory sweep's inner steps",
    )
    parser.add_argument(
        "--sweep_config",
        default="omniglot_5w1s_max",
        choices=CONFIGS,
        help="the memory sweep's configuration",
    )
    parser.add_argument(
        "--task_parallelism",
        default="auto",
        help="how the meta-learners' tasks share the cores. auto: as the "
        "training scripts set it (2 tasks in a tf.map_fn loop, TensorFlow's "
        "process-wide threads set to one per op, on a CPU-only host; "
        "Pretrain keeps 1 task and TensorFlow's threading); default: "
        "nothing set, as in the README's Example (2 tasks on a thread pool "
        "of their own on a CPU-only host, one thread per op as "
        "`import keras_meta` sets it); an int N: "
        "set_task_parallelism(N) (1: one task at a time on TensorFlow's "
        "threading, the default before the tasks had a pool of their own); "
        "inflight:N: N tasks in a tf.map_fn loop, TensorFlow's threading "
        "untouched",
    )
    parser.add_argument(
        "--learn2learn_python",
        help="an interpreter with torch and learn2learn (its own virtual "
        "environment): each row is then preceded by learn2learn's, measured "
        "by learn2learn_reference.py, and the speed-up printed",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="with --learn2learn_python: keep both processes alive and "
        "time them in this many alternating rounds of --iterations "
        "iterations each (after --warmup), the speed-up the median of the "
        "rounds' ratios; 0: learn2learn's row, then ours",
    )
    parser.add_argument(
        "--versus_env",
        metavar="VARIABLE=VALUE",
        help="with --rounds: instead of learn2learn, ours with this "
        "environment variable set against ours without, e.g. "
        "KERAS_META_TF_THREADS=keep (TensorFlow's own threading)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inner_steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--recompute",
        default="auto",
        choices=("auto", "true", "false"),
        help="MAML's and MAML++'s recompute option (auto: each one's "
        "default, MAML's recomputes beyond one inner step, MAML++'s never)",
    )
    parser.add_argument(
        "--dtype_policy",
        default="float32",
        help="keras.config.set_dtype_policy before building, e.g. "
        "mixed_bfloat16 (a lever measured in benchmarks/README.md)",
    )
    parser.add_argument(
        "--tasks_per_group",
        default="default",
        help="for algorithms whose tasks vectorize (ANIL): N tasks batched "
        "together under tf.vectorized_map, or off: one task at a time "
        "(default: the algorithm's own setting; ANIL's is off)",
    )
    parser.add_argument(
        "--batch_norm",
        default="fused",
        choices=("fused", "keras"),
        help="conv4's batch norm: fused (keras_meta.layers.BatchNormalization, "
        "its default) or keras (keras.layers.BatchNormalization's composite "
        "ops, as before; a lever measured in benchmarks/README.md)",
    )
    args = parser.parse_args()
    if args.versus_env and not (args.rounds and "=" in args.versus_env):
        parser.error("--versus_env needs VARIABLE=VALUE and --rounds N")

    if args.child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from keras_meta import config
        from keras_meta.cli.runtime import WHOLE_CORES_PER_OP

        tasks = args.task_parallelism
        vectorized = args.tasks_per_group not in ("default", "off")
        batched = args.child[0] in WHOLE_CORES_PER_OP or vectorized
        if tasks == "auto" and batched:
            tasks = "1"  # as the scripts: large batches want every core
        if tasks.startswith("inflight:"):
            config.set_task_parallelism(
                int(tasks.split(":")[1]), threads_per_op=None
            )
        elif tasks == "auto":  # as the training scripts set it
            config.set_task_parallelism("auto", "global")
        elif tasks != "default":  # default: what a bare Keras program gets
            config.set_task_parallelism(int(tasks))
        import keras

        keras.config.set_dtype_policy(args.dtype_policy)
        result = measure(
            *args.child,
            args.warmup,
            args.iterations,
            args.inner_steps,
            {"true": True, "false": False}.get(args.recompute, "auto"),
            args.tasks_per_group,
            args.batch_norm,
            args.serve,
        )
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.learn2learn_python and not os.access(
        args.learn2learn_python, os.X_OK
    ):
        parser.error(
            f"--learn2learn_python {args.learn2learn_python!r} is not an "
            "executable interpreter; see benchmarks/learn2learn_reference.py "
            "for how to make its virtual environment."
        )
    rows = [
        measure_row(algorithm, config_name, args)
        for config_name in args.configs
        for algorithm in args.only
    ]
    if args.memory_sweep:
        for steps in args.sweep_steps:
            extra = ["--inner_steps", str(steps)]
            for recompute in ("false", "true"):
                rows.append(
                    run_child(
                        "maml",
                        args.sweep_config,
                        args,
                        extra + ["--recompute", recompute],
                    )
                )
            rows.append(run_child("imaml", args.sweep_config, args, extra))
    command = "python " + " ".join(sys.argv)
    print(f"\nReproduce with: {command}")
    if args.json:
        import tensorflow as tf

        # Written whole, then renamed: an interrupted run leaves no half file.
        with open(args.json + ".tmp", "w") as f:
            json.dump(
                {
                    "command": command,
                    "machine": {
                        "cpus": os.cpu_count(),
                        "cpu": cpu_model(),
                        "platform": platform.platform(),
                        "tensorflow": tf.__version__,
                    },
                    "results": rows,
                },
                f,
                indent=2,
            )
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
