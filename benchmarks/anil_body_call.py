"""ANIL's body run once on support and query together, against once per set.

`ANIL.predict_task` runs the body on `concat([support, query])`, each set
normalised by its own batch-norm statistics (`keras_meta.layers.
batch_segments`), where it used to run the body once per set. Both give the
same numbers (tests/test_meta_gradients.py); this times them side by side in
one process, on `throughput.py`'s synthetic episodes through `fit`, the two
models alternating in rounds so that a drift of the machine's speed falls on
both:

    python benchmarks/anil_body_call.py \
        --configs omniglot_5w1s_stride omniglot_5w1s_max omniglot_20w1s_stride

Prints the median seconds per meta-iteration of each and their ratio.
"""

import argparse
import statistics
import time

from throughput import CONFIGS, build, synthetic_data


def compare(config_name, rounds, steps):
    import keras

    config = CONFIGS[config_name]
    models = {}
    for name in ("one call", "a call per set"):
        model = build("anil", config)
        model._split.segments_apply = name == "one call"
        models[name] = model
    data = synthetic_data("anil", config)
    for model in models.values():  # trace and warm up
        model.fit(data, steps_per_epoch=2, verbose=0)
    times = {name: [] for name in models}

    class Timer(keras.callbacks.Callback):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.out.append(time.perf_counter() - self.start)

    order = list(models)
    for _ in range(rounds):
        for name in order:
            models[name].fit(
                data,
                steps_per_epoch=steps,
                verbose=0,
                callbacks=[Timer(times[name])],
            )
        order.reverse()
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--configs",
        nargs="*",
        default=["omniglot_5w1s_stride", "omniglot_5w1s_max"],
        choices=list(CONFIGS),
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    import keras_meta  # noqa: F401  (before keras: oneDNN on a CPU)

    for config_name in args.configs:
        median = compare(config_name, args.rounds, args.steps)
        joint, apart = median["one call"], median["a call per set"]
        print(
            f"{config_name:24s} one call {joint:.3f} s/it, a call per set "
            f"{apart:.3f} s/it: {apart / joint:.2f}x",
            flush=True,
        )
    print(
        "Reproduce with: python benchmarks/anil_body_call.py --configs "
        f"{' '.join(args.configs)} --rounds {args.rounds} --steps {args.steps}"
    )


if __name__ == "__main__":
    main()
