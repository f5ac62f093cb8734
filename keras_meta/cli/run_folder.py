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
        .lock                  held by the process that runs it

Nothing is written until every setting has been checked (`create` comes
last), so a rejected command leaves no half-made folder behind. One
process at a time works in a run folder: it holds an OS lock on `.lock`
for its life, which the OS releases when the process dies, however it
dies. `--overwrite` removes only a folder that holds nothing but what this
tool writes.
"""

import fnmatch
import json
import os
import pathlib
import re
import shutil

from keras_meta.atomic import atomic_path
from keras_meta.callbacks import read_checkpoint_state
from keras_meta.cli.errors import UsageError
from keras_meta.cli.run_config import RunConfig

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded.
    fcntl = None


# What this tool writes in a run folder (`train.analyze` and
# `train.evaluate` included); anything else is the user's.
TOOL_ENTRIES = (
    "config.json",
    "checkpoint",
    "best.keras",
    "snapshots",
    "logs",
    "history.csv",
    "model.keras",
    "saved_model",
    "results.json",
    "learning_curve.png",
    "accuracy_vs_steps.png",
    "analysis.json",
    "analysis_*.png",
    ".lock",
    ".*.tmp-*",
)


# The lock files this process holds, open until it exits (a closed file
# would drop its lock).
_HELD_LOCKS = {}


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
        self.lock_file = self.path / ".lock"

    def holds_files(self):
        """Whether the folder holds anything but a lock file."""
        return self.path.is_dir() and any(
            entry.name != self.lock_file.name for entry in self.path.iterdir()
        )

    def foreign_entries(self):
        """The entries of the folder this tool did not write."""
        return sorted(
            entry.name
            for entry in self.path.iterdir()
            if not any(fnmatch.fnmatch(entry.name, p) for p in TOOL_ENTRIES)
        )

    def is_run(self):
        """Whether the folder holds a run of this tool and nothing else: a
        readable `config.json` and only the entries the tool writes."""
        try:
            RunConfig.from_dict(json.loads(self.config_file.read_text()))
        except (OSError, ValueError, TypeError):
            return False
        return not self.foreign_entries()

    def check_path(self):
        """Raises `UsageError` if the path is, or lies under, a file."""
        for path in (self.path, *self.path.parents):
            if path.exists():
                if not path.is_dir():
                    where = "is" if path == self.path else f"lies under {path},"
                    raise UsageError(
                        f"--output_dir {self.path} {where} a file, not a "
                        "folder: choose a folder path."
                    )
                return

    def check_new(self, overwrite):
        """Raises `UsageError` unless a new run may start here."""
        self.check_path()
        if not self.holds_files():
            return
        if not overwrite:
            raise UsageError(
                f"{self.path} holds another run. Pass --resume to continue "
                "it, --overwrite to replace it, or choose "
                "--output_dir/--run_name."
            )
        if not self.is_run():
            foreign = self.foreign_entries()
            what = (
                f"files this tool did not write ({', '.join(foreign[:5])}"
                + (", ..." if len(foreign) > 5 else "")
                + ")"
                if foreign
                else "no readable config.json of a run"
            )
            raise UsageError(
                f"--overwrite: {self.path} is not a run folder: it holds "
                f"{what}. --overwrite removes only run folders; nothing was "
                "touched. Choose another --output_dir."
            )

    def lock(self):
        """Takes the folder's lock for the life of this process (the OS
        drops it when the process ends, even on SIGKILL). Raises
        `UsageError` naming the holder if another process has it."""
        key = str(self.path.resolve())
        if fcntl is None or key in _HELD_LOCKS:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_file, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UsageError(
                f"{self.path} is in use by another run (process {holder}). "
                "Wait for it to end, or choose another --output_dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD_LOCKS[key] = handle

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
        """Makes the folder and takes its lock, empties it with `overwrite`
        (a run folder only, checked again under the lock), and writes the
        config: the first write of a run."""
        self.lock()
        self.check_new(overwrite)  # again: another run may have begun
        if overwrite:
            for entry in self.path.iterdir():
                if entry.name == self.lock_file.name:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
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
