"""Callbacks for meta-training runs: resumable checkpoints and summaries."""

import json
import os

import keras

from keras_meta.atomic import atomic_path

CHECKPOINT_MODEL = "checkpoint.keras"
CHECKPOINT_STATE = "checkpoint.json"


class MetaCheckpoint(keras.callbacks.Callback):
    """Saves a resumable checkpoint every `every` meta-iterations.

    The checkpoint is the whole model as a `.keras` file (architecture,
    weights and the optimizer's state) and `checkpoint.json` with the
    iteration it was taken at, which is also the position in the training
    stream (one meta-batch per iteration). Both are written atomically, the
    model first, so a process killed at any moment leaves the previous
    checkpoint or the new one, never half of one. `load_checkpoint` reads it
    back.

    Args:
        directory: folder for the two files.
        every: iterations between checkpoints (the optimizer's step count).
        extra_state: dict saved along (for example the run's flags).
    """

    def __init__(self, directory, every, extra_state=None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.directory = os.fspath(directory)
        self.every = int(every)
        self.extra_state = dict(extra_state or {})

    def iteration(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        # Count batches in Python, so that no step waits to read the
        # optimizer's counter from the device.
        self._next = (self.iteration() // self.every + 1) * self.every
        self._seen = self.iteration()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen >= self._next:
            self.save()
            self._next = (self._seen // self.every + 1) * self.every

    def save(self):
        """Writes a checkpoint now; returns the iteration it holds."""
        iteration = self.iteration()
        self._seen = iteration
        os.makedirs(self.directory, exist_ok=True)
        self.model.save(os.path.join(self.directory, CHECKPOINT_MODEL))
        state = {"iteration": iteration, **self.extra_state}
        with (
            atomic_path(
                os.path.join(self.directory, CHECKPOINT_STATE)
            ) as staged,
            open(staged, "w") as f,
        ):
            json.dump(state, f, indent=2)
        return iteration


def load_checkpoint(directory):
    """`(model, state)` of the checkpoint in `directory`, or `None` if there
    is none; `state["iteration"]` says where training stopped."""
    directory = os.fspath(directory)
    model_path = os.path.join(directory, CHECKPOINT_MODEL)
    state_path = os.path.join(directory, CHECKPOINT_STATE)
    if not (os.path.exists(model_path) and os.path.exists(state_path)):
        return None
    with open(state_path) as f:
        state = json.load(f)
    model = keras.models.load_model(model_path)
    iteration = int(model.optimizer.iterations.numpy())
    if iteration != state["iteration"]:
        # The model was replaced but the process died before the state:
        # the model's own step count is the truth.
        state["iteration"] = iteration
    return model, state


class EvaluationSummary(keras.callbacks.Callback):
    """Prints one line per evaluation (epoch end): iteration, meta-train
    loss and metrics, and meta-validation ones, e.g.

        iteration 500: loss 0.3921 accuracy 0.8812 | val_loss 0.35 ...
    """

    def __init__(self, print_fn=print):
        super().__init__()
        self.print_fn = print_fn
        self._pending = None

    # The line is printed at the next epoch's start (or the end of
    # training), so that it follows Keras's own progress bar for the epoch.
    def on_epoch_begin(self, epoch, logs=None):
        self._flush()

    def on_train_end(self, logs=None):
        self._flush()

    def _flush(self):
        if self._pending is not None:
            self.print_fn(self._pending)
            self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = " ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if not k.startswith("val_")
        )
        val = " ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if k.startswith("val_")
        )
        iteration = int(self.model.optimizer.iterations.numpy())
        line = f"iteration {iteration}: {train}"
        self._pending = line + (f" | {val}" if val else "")
