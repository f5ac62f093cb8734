"""Callbacks for meta-training runs: resumable checkpoints that never hold
non-finite weights, a stop on a non-finite loss, a training-time budget,
and one-line summaries."""

import json
import math
import os
import time

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


class TerminateOnNonFinite(keras.callbacks.TerminateOnNaN):
    """Stops training at the first meta-iteration whose loss is NaN or
    infinite, and says where and why, like `keras.callbacks.TerminateOnNaN`.

    `stopped_at` is then the iteration (1-based) that produced it, and
    `message` the explanation; use it with `MetaCheckpoint`, which never
    writes the non-finite weights that follow, so the last checkpoint
    stays good.
    """

    def __init__(self, print_fn=print):
        super().__init__()
        self.print_fn = print_fn
        self.stopped_at = None
        self.message = None

    def on_train_begin(self, logs=None):
        self.stopped_at = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        self.stopped_at = int(self.model.optimizer.iterations.numpy())
        self.message = (
            f"The meta-training loss became {float(loss)} at iteration "
            f"{self.stopped_at}; training stopped. The likely cause is a "
            "step size too large for this model (the inner learning rate "
            "or the meta learning rate): lower them, or check the data for "
            "non-finite values."
        )
        self.print_fn(self.message)
        self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Measures training time and stops training when a budget is spent.

    Time spent in validation (`on_test_begin` .. `on_test_end`) is not
    counted. Every epoch's logs get `iteration` and `train_seconds`, so a
    CSVLogger after this callback records them. With `anneal`, the
    optimizer's learning rate (a float, not a schedule) follows the
    fraction `f` of the budget spent: `base * (1 - f)` for `"linear"`,
    `base * (1 + cos(pi f)) / 2` for `"cosine"`: a schedule over the run the
    model actually gets, whatever its speed.

    Args:
        seconds: the budget, or None to only measure.
        anneal: None, `"linear"` or `"cosine"` (needs `seconds`).
        elapsed: seconds already spent (a resumed run).
        clock: `fn() -> seconds` (tests pass a fake one).
    """

    ANNEALS = ("linear", "cosine")

    def __init__(self, seconds=None, anneal=None, elapsed=0.0, clock=None):
        super().__init__()
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        if anneal is not None and (anneal not in self.ANNEALS or not seconds):
            raise ValueError(
                f"anneal must be one of {self.ANNEALS} with a budget in "
                f"seconds, got anneal={anneal!r}, seconds={seconds}."
            )
        self.seconds = seconds
        self.anneal = anneal
        self.elapsed = float(elapsed)
        self.clock = clock or time.monotonic
        self._since = None
        self._base_rate = None

    @property
    def spent(self):
        """Whether the budget is used up."""
        return self.seconds is not None and self.elapsed >= self.seconds

    def fraction(self):
        """Fraction of the budget spent, in [0, 1]."""
        return min(1.0, self.elapsed / self.seconds) if self.seconds else 0.0

    def _pause(self):
        if self._since is not None:
            self.elapsed += self.clock() - self._since
            self._since = None

    def _run(self):
        if self._since is None:
            self._since = self.clock()

    def on_train_begin(self, logs=None):
        if self.anneal and self._base_rate is None:
            self._base_rate = float(self.model.optimizer.learning_rate)
        self._run()

    def on_train_end(self, logs=None):
        self._pause()

    def on_test_begin(self, logs=None):
        self._pause()

    def on_test_end(self, logs=None):
        self._run()

    def on_train_batch_begin(self, batch, logs=None):
        if self.anneal:
            self._pause()
            self._run()
            f = self.fraction()
            factor = (
                1 - f
                if self.anneal == "linear"
                else (1 + math.cos(math.pi * f)) / 2
            )
            self.model.optimizer.learning_rate = self._base_rate * factor

    def on_train_batch_end(self, batch, logs=None):
        self._pause()
        self._run()
        if self.spent:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["iteration"] = int(self.model.optimizer.iterations.numpy())
            running = self._since is not None
            self._pause()
            logs["train_seconds"] = self.elapsed
            if running:
                self._run()


class LearnedRates(keras.callbacks.Callback):
    """Writes a model's learned inner step sizes to TensorBoard after every
    epoch, so they can be watched as they move: the model's
    `learned_rates()` (`{name: value}`; Meta-SGD: the mean rate of each
    weight; MAML++: each step's rate of each weight), as scalars against
    the iteration, under `log_dir`. Models without learned rates are
    skipped."""

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        rates = getattr(self.model, "learned_rates", None)
        if rates is None:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        iteration = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default(step=iteration):
            for name, value in rates().items():
                tf.summary.scalar(name, value)
        self._writer.flush()


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
        logs = {
            k: v
            for k, v in (logs or {}).items()
            if k not in ("iteration", "train_seconds")
        }
        train = " ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if not k.startswith("val_")
        )
        val = " ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if k.startswith("val_")
        )
        iteration = int(self.model.optimizer.iterations.numpy())
        line = f"iteration {iteration}: {train}"
        self._pending = line + (f" | {val}" if val else "")
