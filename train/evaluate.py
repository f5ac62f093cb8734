"""`python -m train.evaluate`: a thin entry point over keras_meta.cli.evaluate
(`keras-meta evaluate` once installed); `--helpfull` lists its flags."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import evaluate  # noqa: E402

if __name__ == "__main__":
    evaluate.run()
