"""Trains ProtoNet: `python -m train.protonet --preset=... [flags]`.

A thin entry point over keras_meta.cli.train (`keras-meta train protonet` once
installed); `--helpfull` lists every flag with its default.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import train  # noqa: E402

if __name__ == "__main__":
    train.main("protonet")
