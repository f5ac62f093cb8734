"""The run folder: what a run writes, and when it may write there.

    <run>/
        config.json            the resolved settings (RunConfig)
        checkpoint/            iteration_<n>.keras + checkpoint.json (resume)
        best.keras             --select=best_val: the best meta-val model
        snapshots/             --keep_snapshots: the model at each evaluation
        logs/                  TensorBoard
        history.csv            meta-train and meta-validation per evaluation
        model.keras            the final model (keras.models.load_model)
        saved_model/           SavedModel: one task in, adapted logits out
        results.json           test accuracy, 95% CI, settings, git revision
        learning_curve.png     loss/accuracy against iteration
        accuracy_vs_steps.png  test accuracy against adaptation steps

Nothing is written until every setting has been checked (`create` comes
last), so a rejected command leaves no half-made folder behind.
"""

import json
import pathlib
import re
import shutil

from keras_meta.atomic import atomic_path
from keras_meta.callbacks import read_checkpoint_state
from keras_meta.cli.config import RunConfig
from keras_meta.cli.errors import UsageError


class RunFolder:
    """The files of one run, under `path`."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.config_file = self.path / "config.json"
        self.checkpoint_dir = self.path / "checkpoint"
        self.best_model = self.path / "best.keras"
        self.snapshots_dir = self.path / "snapshots"
        self.logs_dir = self.path / "logs"
        self.history = self.path / "history.csv"
        self.model_file = self.path / "model.keras"
        self.saved_model = self.path / "saved_model"
        self.results = self.path / "results.json"

    def holds_files(self):
        return self.path.exists() and any(self.path.iterdir())

    def check_new(self, overwrite):
        """Raises `UsageError` unless a new run may start here."""
        if self.holds_files() and not overwrite:
            raise UsageError(
                f"{self.path} holds another run. Pass --resume to continue "
                "it, --overwrite to replace it, or choose "
                "--output_dir/--run_name."
            )

    def resume_state(self):
        """`(config, checkpoint state)` of the run to resume, or a
        `UsageError` saying why there is none."""
        try:
            state = read_checkpoint_state(self.checkpoint_dir)
        except ValueError as e:
            raise UsageError(str(e)) from e
        if state is None or not self.config_file.exists():
            raise UsageError(
                f"--resume: {self.path} holds no checkpoint to resume from."
            )
        try:
            values = json.loads(self.config_file.read_text())
            config = RunConfig.from_dict(values)
        except (ValueError, TypeError) as e:
            raise UsageError(
                f"--resume: {self.config_file} is corrupt or from another "
                f"version ({e}); the run cannot be resumed."
            ) from e
        return config, state

    def create(self, config, overwrite):
        """Makes the folder (emptied with `overwrite`) and writes the
        config: the first write of a run."""
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json(self.config_file, config.as_dict())

    @staticmethod
    def write_json(path, value):
        """Writes `value` as JSON to `path`, atomically; a list of numbers
        (such as per-task scores) stays on one line."""
        RunFolder.write_text(
            path, _NUMBER_LIST.sub(_one_line, json.dumps(value, indent=2))
        )

    @staticmethod
    def write_text(path, text):
        """Writes `text` to `path`, atomically."""
        with atomic_path(path) as staged, open(staged, "w") as f:
            f.write(text)


_NUMBER_LIST = re.compile(
    r"\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]"
)


def _one_line(match):
    return "[" + ", ".join(match.group(1).replace(",", " ").split()) + "]"
