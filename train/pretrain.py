"""Trains the pre-training baseline: joint training, a fresh head per task.

    python -m train.pretrain --preset=... [flags]   # --helpfull: all flags

See train/runner.py for what a run writes.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from train import runner  # noqa: E402  (defines the shared flags)

if __name__ == "__main__":
    runner.main("pretrain")
