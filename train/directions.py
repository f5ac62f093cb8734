"""`python -m train.directions`: a thin entry point over
keras_meta.cli.directions (`keras-meta directions` once installed)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_meta.cli import directions  # noqa: E402

if __name__ == "__main__":
    directions.run()
