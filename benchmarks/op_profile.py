"""Where a meta-iteration's time goes: a per-op profile of `fit`.

Trains one algorithm on `throughput.py`'s synthetic episodes through `fit`
(the default path, nothing set), profiles a few meta-iterations after
warm-up with TensorFlow's profiler, and prints the ops' self time by op type
and, for each convolution of the learner, the time of its forward and
backward kernels. Needs the profiler's converter
(`pip install tensorboard-plugin-profile`, which brings `xprof`):

    python benchmarks/op_profile.py --algorithm maml --config omniglot_5w1s_max

The profiler's tracing slows the run down; the shares, not the absolute
times, are the result. `--logdir` keeps the trace for TensorBoard's
Profile tab.
"""

import argparse
import collections
import json
import pathlib
import re
import tempfile

from throughput import ALGORITHMS, CONFIGS, build, synthetic_data


def profile(algorithm, config_name, iterations, logdir):
    """Runs `iterations` profiled meta-iterations; returns the op rows."""
    import tensorflow as tf

    try:
        from xprof.convert import raw_to_tool_data
    except ImportError as e:
        raise SystemExit(
            "error: the profile needs xprof: pip install "
            "tensorboard-plugin-profile"
        ) from e
    config = CONFIGS[config_name]
    model = build(algorithm, config)
    data = synthetic_data(algorithm, config)
    model.fit(data, steps_per_epoch=3, verbose=0)  # trace and warm up
    tf.profiler.experimental.start(str(logdir))
    model.fit(data, steps_per_epoch=iterations, verbose=0)
    tf.profiler.experimental.stop()
    planes = sorted(pathlib.Path(logdir).glob("**/*.xplane.pb"))
    raw, _ = raw_to_tool_data.xspace_to_tool_data(
        [str(planes[-1])], "framework_op_stats", {}
    )
    table = json.loads(raw)[0]
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, [c["v"] for c in r["c"]])) for r in table["rows"]]
    return [r for r in rows if r["type"] != "IDLE"]


def conv_kind(op_type):
    if "BackpropFilter" in op_type:
        return "filter gradient"
    if "BackpropInput" in op_type:
        return "input gradient"
    if "Conv2D" in op_type:
        return "forward"
    return None


def report(rows, iterations, top):
    total = sum(r["total_self_time"] for r in rows)
    by_type = collections.Counter()
    for r in rows:
        by_type[r["type"]] += r["total_self_time"]
    print(
        f"ops' self time: {total / 1e6 / iterations:.2f} thread-seconds per "
        "meta-iteration (profiled)"
    )
    print("\nshare | op type")
    for op_type, t in by_type.most_common(top):
        print(f"{100 * t / total:5.1f}% | {op_type}")
    layers = collections.defaultdict(collections.Counter)
    for r in rows:
        kind = conv_kind(r["type"])
        layer = re.search(r"(block\d+_conv)", r["operation"])
        if kind and layer:
            layers[layer.group(1)][kind] += r["total_self_time"]
    print(
        "\nconvolution | forward | input gradient | filter gradient (s per it)"
    )
    for layer in sorted(layers):
        t = layers[layer]
        print(
            f"{layer} | "
            + " | ".join(
                f"{t[k] / 1e6 / iterations:.3f}"
                for k in ("forward", "input gradient", "filter gradient")
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithm", default="maml", choices=ALGORITHMS)
    parser.add_argument(
        "--config", default="omniglot_5w1s_max", choices=list(CONFIGS)
    )
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--logdir", help="keep the trace here")
    args = parser.parse_args()
    import keras_meta  # noqa: F401  (before keras: oneDNN on a CPU)

    with tempfile.TemporaryDirectory() as scratch:
        logdir = args.logdir or scratch
        rows = profile(args.algorithm, args.config, args.iterations, logdir)
        report(rows, args.iterations, args.top)
    print(
        "\nReproduce with: python benchmarks/op_profile.py --algorithm "
        f"{args.algorithm} --config {args.config} --iterations "
        f"{args.iterations}"
    )


if __name__ == "__main__":
    main()
