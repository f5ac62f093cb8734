"""Resumable checkpoints: a callback that writes them atomically and never
with non-finite weights, and the functions that read them back."""

import json
import os

import keras
import numpy as np

from keras_meta.atomic import atomic_path

LATEST = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read back; says which file."""


def _all_finite(variables):
    return all(np.all(np.isfinite(v.numpy())) for v in variables)


class MetaCheckpoint(keras.callbacks.Callback):
    """Saves a resumable checkpoint every `every` meta-iterations.

    A checkpoint is the whole model as `iteration_<n>.keras` (architecture,
    weights, the optimizer's state) and `checkpoint.json`, which names the
    newest model file and holds the iteration (also the position in the
    training stream: one meta-batch per iteration), the state of the
    epoch's metrics so far and any `extra()` values. The model file is
    written first, then the JSON, each atomically, and the previous model
    file is deleted last: a process killed at any moment leaves a complete
    checkpoint, the previous one or the new one. Weights that are not all
    finite are never written (`save` returns None instead).

    Args:
        directory: the checkpoint folder.
        every: iterations between checkpoints (the optimizer's step count).
        extra: optional `fn() -> dict` of JSON values to store along (for
            example the training time spent so far).
        restore_metrics: metric accumulators from a checkpoint (its
            `"metrics"` entry), added back after the first step of a
            resumed epoch, so that its averages cover the whole epoch.
    """

    def __init__(self, directory, every, extra=None, restore_metrics=None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.directory = os.fspath(directory)
        self.every = int(every)
        self.extra = extra
        self._restore = restore_metrics
        self._snapshot = None

    def iteration(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        # Count batches in Python, so that no step waits to read the
        # optimizer's counter from the device.
        self._seen = self.iteration()
        self._next = (self._seen // self.every + 1) * self.every

    def on_epoch_begin(self, epoch, logs=None):
        self._snapshot = None

    def on_test_begin(self, logs=None):
        # Validation resets the metrics: keep the epoch's training values.
        self._snapshot = self._metric_values()

    def on_train_batch_begin(self, batch, logs=None):
        self._snapshot = None

    def on_train_batch_end(self, batch, logs=None):
        if self._restore:
            # After the resumed epoch's first step every metric is built;
            # its accumulators (totals, counts) add to the saved ones.
            variables = [v for m in self.model.metrics for v in m.variables]
            for variable, value in zip(variables, self._restore):
                variable.assign_add(np.asarray(value, variable.dtype))
            self._restore = None
        self._seen += 1
        if self._seen >= self._next:
            self.save()
            self._next = (self._seen // self.every + 1) * self.every

    def _metric_values(self):
        return [
            np.asarray(v.numpy()).tolist()
            for m in self.model.metrics
            for v in m.variables
        ]

    def save(self):
        """Writes a checkpoint now; returns its iteration, or None (and
        writes nothing) if the weights are not all finite."""
        iteration = self.iteration()
        self._seen = iteration
        if not _all_finite(self.model.trainable_variables):
            return None
        os.makedirs(self.directory, exist_ok=True)
        name = f"iteration_{iteration:08d}.keras"
        self.model.save(os.path.join(self.directory, name))
        state = {
            "iteration": iteration,
            "model": name,
            "metrics": self._snapshot or self._metric_values(),
            **(self.extra() if self.extra else {}),
        }
        with (
            atomic_path(os.path.join(self.directory, LATEST)) as staged,
            open(staged, "w") as f,
        ):
            json.dump(state, f, indent=2)
        for old in os.listdir(self.directory):
            if old.startswith("iteration_") and old != name:
                os.remove(os.path.join(self.directory, old))
        return iteration


def read_checkpoint_state(directory):
    """The `checkpoint.json` of `directory` as a dict, or None if there is
    none; a `CheckpointError` naming the file if it cannot be read."""
    path = os.path.join(os.fspath(directory), LATEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        int(state["iteration"]), str(state["model"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"The checkpoint state {path} is corrupt ({type(e).__name__}: "
            f"{e}); the run cannot be resumed from it. Restore the file or "
            "start the run again with --overwrite."
        ) from e
    return state


def load_checkpoint(directory):
    """`(model, state)` of the checkpoint in `directory`, or None if there
    is none; `state["iteration"]` says where training stopped.

    Raises:
        CheckpointError: a checkpoint file is missing, truncated or corrupt
            (the message names it).
    """
    state = read_checkpoint_state(directory)
    if state is None:
        return None
    path = os.path.join(os.fspath(directory), state["model"])
    if not os.path.exists(path):
        raise CheckpointError(
            f"{os.path.join(directory, LATEST)} names the model file {path}, "
            "which does not exist; the run cannot be resumed. Start it "
            "again with --overwrite."
        )
    try:
        model = keras.models.load_model(path)
    except Exception as e:  # zip, HDF5 and Keras errors alike
        raise CheckpointError(
            f"The checkpoint model {path} cannot be read, it is truncated "
            f"or corrupt ({type(e).__name__}: {e}). Start the run again "
            "with --overwrite."
        ) from e
    return model, state
