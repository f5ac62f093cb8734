"""absl-flag training scripts: `python -m train.maml`, thin over keras_meta."""
