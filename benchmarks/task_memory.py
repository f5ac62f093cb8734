"""Peak memory of a meta-update as the learner grows: MAML on a wide MLP.

    python benchmarks/task_memory.py [--tasks 32] [--width 2048]

Trains MAML (one inner step, `compile(optimizer="adam")`, `fit`) for three
meta-iterations on synthetic 5-way 1-shot episodes of flat 784-pixel
images, 15 queries per class, with the learner `784 -> width -> width -> 5`
(5.8M weights, 23 MB, at the default width), and prints the peak resident
memory of this process before training and after. The train step keeps
every task's gradient until the mean, `tasks` copies of the learner's
weights; summing them as the tasks finish (commit 6ad674a, reverted for
its speed, `benchmarks/README.md`) held 3x less. Run it from two checkouts
(`PYTHONPATH=...`) to compare them; peak memory does not depend on the
machine's load, but run one process at a time.
"""

import argparse
import os
import resource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--width", type=int, default=2048)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_meta

    rng = np.random.default_rng(0)
    ways, queries, pixels = 5, 15, 784
    episode = {
        "support_x": rng.random((args.tasks, ways, pixels), "f4"),
        "support_y": np.tile(np.arange(ways), (args.tasks, 1)),
        "query_x": rng.random((args.tasks, ways * queries, pixels), "f4"),
    }
    query_y = np.tile(np.repeat(np.arange(ways), queries), (args.tasks, 1))
    learner = keras.Sequential(
        [
            keras.Input((pixels,)),
            keras.layers.Dense(args.width, activation="relu"),
            keras.layers.Dense(args.width, activation="relu"),
            keras.layers.Dense(ways),
        ]
    )
    model = keras_meta.MAML(learner, inner_lr=0.1)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    data = tf.data.Dataset.from_tensors((episode, query_y)).repeat()
    before = peak_mib()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    after = peak_mib()
    weights_mib = sum(v.numpy().nbytes for v in learner.weights) / 2**20
    print(
        f"MAML, {args.tasks} tasks, learner of {learner.count_params():,} "
        f"weights ({weights_mib:.0f} MiB): peak RSS {before:.0f} MiB built, "
        f"{after:.0f} MiB after 3 meta-iterations (+{after - before:.0f})"
    )
    print(
        "command: python benchmarks/task_memory.py "
        f"--tasks {args.tasks} --width {args.width}"
    )


if __name__ == "__main__":
    main()
