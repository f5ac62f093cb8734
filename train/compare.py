"""`python -m train.compare`: a thin entry point over keras_meta.cli.compare
(`keras-meta compare` once installed); `--helpfull` lists its flags."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import compare  # noqa: E402

if __name__ == "__main__":
    compare.run()
