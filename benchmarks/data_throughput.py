"""Omniglot episode pipeline: time to the first batch and batches per second.

    python benchmarks/data_throughput.py [--data_dir ../shared/data/tfds]

Measures, in this fresh process, the time from the call of
`keras_meta.data.omniglot` (decoding the prepared TFDS copy included, imports
excluded) to the first meta-batch, then meta-batches per second over the
next `--batches` of 5-way 1-shot episodes with 15 queries per class and 32
tasks, read from the dataset as a training loop would.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = pathlib.Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = REPO.parent / "shared" / "data" / "tfds"
    parser.add_argument(
        "--data_dir",
        default=str(default) if default.exists() else None,
        help="TFDS data folder with a prepared omniglot (default: "
        "../shared/data/tfds when present, else TFDS's own)",
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--meta_batch", type=int, default=32)
    args = parser.parse_args()

    import keras_meta  # noqa: F401  (imports are not timed)

    start = time.perf_counter()
    dataset = keras_meta.data.omniglot(
        "train",
        ways=5,
        shots=1,
        queries=15,
        meta_batch=args.meta_batch,
        data_dir=args.data_dir,
        download=False,
    )
    iterator = iter(dataset)
    next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    rate = args.batches / (time.perf_counter() - start)
    print(f"time to first batch   {first:6.2f} s")
    print(
        f"meta-batches / second {rate:6.1f}  (5-way 1-shot, 15 queries, "
        f"{args.meta_batch} tasks)"
    )
    print("Reproduce with: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
