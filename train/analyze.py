"""`python -m train.analyze`: a thin entry point over keras_meta.cli.analyze
(`keras-meta analyze` once installed); `--helpfull` lists its flags."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import analyze  # noqa: E402

if __name__ == "__main__":
    analyze.run()
