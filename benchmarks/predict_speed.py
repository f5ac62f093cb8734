"""How fast `keras-meta predict` answers once its SavedModel is loaded.

    python benchmarks/predict_speed.py --model saved_models/<run> [--repeats 5]

Writes a task of synthetic images at the model's input size (25 support
images, 5 classes of 5, and 100 queries) as PNG files, loads the model once
(`keras_meta.cli.predict.Predictor`), then times reading and preparing the
files and the SavedModel's adaptation and prediction, separately, over
`--repeats` calls. Prints the medians and the command. The SavedModel's
serving function is traced when it is loaded, so no call retraces.
"""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_task(root, shape, ways=5, shots=5, queries=100, seed=0):
    rng = np.random.default_rng(seed)
    mode = "L" if shape[-1] == 1 else "RGB"
    for c in range(ways):
        (root / "support" / f"class_{c}").mkdir(parents=True)
        for i in range(shots):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8).squeeze()
            Image.fromarray(pixels, mode).save(
                root / "support" / f"class_{c}" / f"{i}.png"
            )
    (root / "query").mkdir()
    for i in range(queries):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8).squeeze()
        Image.fromarray(pixels, mode).save(root / "query" / f"{i:03d}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from keras_meta.cli import predict

    began = time.perf_counter()
    predictor = predict.Predictor(args.model)
    loaded = time.perf_counter() - began
    size = predictor.preprocessing.size or 28
    shape = (size, size, predictor.preprocessing.channels)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        write_task(root, shape, ways=min(5, predictor.ways))
        prepare, serve = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            support_x, labels, _, _, query_x = predict.read_task(
                predictor, root / "support", [str(root / "query")]
            )
            t1 = time.perf_counter()
            predictor.predict(support_x, labels, query_x)
            serve.append(time.perf_counter() - t1)
            prepare.append(t1 - t0)
    print(
        f"model {args.model}: loaded in {loaded:.2f} s; 25 support + 100 "
        f"query images of {shape}, median of {args.repeats}: read and "
        f"prepare {statistics.median(prepare):.3f} s, adapt and predict "
        f"{statistics.median(serve):.3f} s (first call "
        f"{serve[0]:.3f} s)"
    )
    print(
        "command: python benchmarks/predict_speed.py "
        f"--model {args.model} --repeats {args.repeats}"
    )


if __name__ == "__main__":
    main()
