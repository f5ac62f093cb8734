"""Callbacks for meta-training runs: resumable checkpoints that never hold
non-finite weights (`keras_meta.checkpoints`), a stop on a non-finite loss,
a training-time budget, learned step sizes in TensorBoard, and one-line
summaries."""

import math
import os
import time

import keras

from keras_meta.checkpoints import (  # noqa: F401  (part of this API)
    CheckpointError,
    MetaCheckpoint,
    load_checkpoint,
    read_checkpoint_state,
)


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

    def __init__(
        self,
        seconds=None,
        anneal=None,
        elapsed=0.0,
        clock=None,
        schedule_iterations=None,
    ):
        super().__init__()
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        if anneal is not None and (anneal not in self.ANNEALS or not seconds):
            raise ValueError(
                f"anneal must be one of {self.ANNEALS} with a budget in "
                f"seconds, got anneal={anneal!r}, seconds={seconds}."
            )
        if schedule_iterations is not None and not (
            seconds and schedule_iterations > 0
        ):
            raise ValueError(
                "schedule_iterations must be a positive number of "
                "iterations, with a budget in seconds; got "
                f"schedule_iterations={schedule_iterations}, "
                f"seconds={seconds}."
            )
        self.seconds = seconds
        self.anneal = anneal
        self.schedule_iterations = schedule_iterations
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
        schedule = (
            getattr(self.model, "schedule_clock", None)
            if self.schedule_iterations
            else None
        )
        if not self.anneal and schedule is None:
            return
        self._pause()
        self._run()
        f = self.fraction()
        if schedule is not None:
            schedule.assign(f * self.schedule_iterations)
        if self.anneal:
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
    `learned_rate_summary()` (`{name: value}`; Meta-SGD: the mean rate of each
    weight; MAML++: each step's rate of each weight), as scalars against
    the iteration, under `log_dir`. Models without learned rates are
    skipped."""

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        rates = getattr(self.model, "learned_rate_summary", None)
        if not callable(rates):
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
