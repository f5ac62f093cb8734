"""Trains ANIL: the inner loop adapts only the head.

    python -m train.anil --preset=... [flags]   # --helpfull: all flags

See train/runner.py for what a run writes.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from train import runner  # noqa: E402  (defines the shared flags)

if __name__ == "__main__":
    runner.main("anil")
