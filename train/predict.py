"""`python -m train.predict`: a thin entry point over keras_meta.cli.predict
(`keras-meta predict` once installed); `--helpfull` lists its flags."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import predict  # noqa: E402

if __name__ == "__main__":
    predict.run()
