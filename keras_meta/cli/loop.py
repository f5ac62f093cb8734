"""The training loop of a run: `fit` in epochs of `eval_every` iterations,
with checkpoints, logs, a stop on a non-finite loss, a time budget and a
clean stop on Ctrl-C or SIGTERM (what a scheduler sends before it
preempts a job)."""

import math
import signal

import keras

import keras_meta
from keras_meta.cli import datasets
from keras_meta.cli.errors import TrainingFailed
from keras_meta.cli.registry import ALGORITHMS


def epoch_segments(start, total, every):
    """The `fit` calls that train iterations `[start, total)` in epochs of
    `every` iterations: `(initial_epoch, epochs, steps_per_epoch)` each.

    Whole epochs share one call; a partial epoch (after a resume, or the
    last one) gets a call of its own, so epoch `e` always ends at iteration
    `min((e + 1) * every, total)`.
    """
    segments = []
    iteration = start
    while iteration < total:
        epoch = iteration // every
        whole = (total - iteration) // every
        if iteration % every or not whole:
            end = min((epoch + 1) * every, total)
            segments.append((epoch, epoch + 1, end - iteration))
            iteration = end
        else:
            segments.append((epoch, epoch + whole, every))
            iteration += whole * every
    return segments


class Interrupt(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) and SIGTERM into a clean stop after the
    current step; `signal` says which came (None: none).

    The signal handler only records it, and this callback reads that after
    every training or validation batch, so the signal cannot be lost inside
    TensorFlow or a finaliser. Install it with `with Interrupt() as i:`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.signal = None
        self._previous = {}

    @property
    def requested(self):
        return self.signal is not None

    def _handle(self, signum, frame):
        self.signal = signum

    def __enter__(self):
        self._previous = {
            s: signal.signal(s, self._handle) for s in self.SIGNALS
        }
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        return False

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        self.on_train_batch_end(batch, logs)


def trim_history(folder, config, iteration):
    """Drops the rows of `history.csv` that a resumed run will write again:
    any after `iteration` (the checkpoint), and a partial epoch's (a run
    stopped mid-epoch by Ctrl-C logs one)."""
    if not folder.history.exists():
        return
    # Read untranslated: Keras's CSVLogger ends its rows as the csv module
    # does ("\r\n"), and the kept rows keep that ending so that the rows
    # appended on resume match them.
    text = folder.history.read_bytes().decode()
    ending = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    header = lines[0].split(",") if lines else []
    if "iteration" not in header:
        return
    column = header.index("iteration")
    kept = [lines[0]]
    for line in lines[1:]:
        at = int(float(line.split(",")[column]))
        boundary = at % config.eval_every == 0 or at == config.iterations
        if at <= iteration and boundary:
            kept.append(line)
    from keras_meta.cli.run_folder import RunFolder

    RunFolder.write_text(folder.history, ending.join(kept) + ending)


def best_so_far(folder, monitor):
    """The best `monitor` value in the run's history (for a resumed run's
    best-model selection), or None."""
    from keras_meta import plots

    if not folder.history.exists():
        return None
    values = [
        v
        for v in plots.read_history(folder.history).get(monitor, [])
        if math.isfinite(v)
    ]
    if not values:
        return None
    return max(values) if monitor.endswith("accuracy") else min(values)


def callbacks_for(model, config, folder, state, interrupt, snapshots):
    """The callbacks of a run, in the order they must see each event."""
    budget = keras_meta.callbacks.TimeBudget(
        None if config.minutes is None else 60 * config.minutes,
        anneal=(
            config.meta_lr_schedule
            if config.minutes is not None
            and config.meta_lr_schedule != "constant"
            else None
        ),
        elapsed=(state or {}).get("train_seconds", 0.0),
        # In a timed run, the model's iteration schedules (MAML++'s) take
        # the share of the time they take of the preset's iterations.
        schedule_iterations=(
            None if config.minutes is None else config.iterations
        ),
    )
    iteration = (state or {}).get("iteration", 0)
    mid_epoch = iteration % config.eval_every
    checkpoint = keras_meta.callbacks.MetaCheckpoint(
        folder.checkpoint_dir,
        config.checkpoint_every,
        extra=lambda: {"train_seconds": budget.elapsed},
        restore_metrics=state["metrics"] if state and mid_epoch else None,
    )
    non_finite = keras_meta.callbacks.TerminateOnNonFinite()
    callbacks = [
        budget,  # first: adds iteration and train_seconds to epoch logs
        non_finite,
        interrupt,
        checkpoint,
        keras.callbacks.CSVLogger(str(folder.history), append=True),
        keras.callbacks.TensorBoard(str(folder.logs_dir)),
        keras_meta.callbacks.LearnedRates(folder.logs_dir / "learned_rates"),
        keras_meta.callbacks.EvaluationSummary(),
    ]
    if config.select == "best_val":
        monitor = "val_accuracy" if model.metrics_names[1:] else "val_loss"
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(folder.best_model),
                monitor=monitor,
                mode="max" if monitor.endswith("accuracy") else "min",
                save_best_only=True,
                initial_value_threshold=best_so_far(folder, monitor),
            )
        )
    if snapshots:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(folder.snapshots_dir / "epoch_{epoch:04d}.keras")
            )
        )
    return callbacks, budget, checkpoint, non_finite


def train(model, config, folder, state=None, verbose=1, snapshots=False):
    """Meta-trains from the checkpoint `state` (or iteration 0) to
    `config.iterations` or the end of the time budget.

    Returns:
        `(stopped_by, train_seconds)`: the signal that stopped the run
        (SIGINT or SIGTERM, after a checkpoint), or None if it trained to
        its end.

    Raises:
        TrainingFailed: the loss became NaN or infinite (the last good
            checkpoint is kept).
    """
    start = (state or {}).get("iteration", 0)
    if state is not None:
        trim_history(folder, config, start)
    episodic = ALGORITHMS[config.algorithm].episodic
    validation = (
        datasets.make_data(config, "val")
        .take(math.ceil(config.val_tasks / datasets.EVAL_META_BATCH))
        .cache()
    )
    with Interrupt() as interrupt:
        callbacks, budget, checkpoint, non_finite = callbacks_for(
            model, config, folder, state, interrupt, snapshots
        )
        segments = epoch_segments(start, config.iterations, config.eval_every)
        if config.minutes is not None and budget.spent:
            segments = []  # a resumed run whose time was already spent
        for initial_epoch, epochs, steps in segments:
            iteration = int(model.optimizer.iterations.numpy())
            model.fit(
                datasets.make_data(
                    config, "train", episodic=episodic, start=iteration
                ),
                initial_epoch=initial_epoch,
                epochs=epochs,
                steps_per_epoch=steps,
                validation_data=validation,
                callbacks=callbacks,
                verbose=verbose,
            )
            if non_finite.stopped_at or interrupt.requested or budget.spent:
                break
        if non_finite.stopped_at:
            raise TrainingFailed(
                non_finite.message
                + f" The last good checkpoint is in {folder.checkpoint_dir}."
            )
        if segments:
            checkpoint.save()
        return interrupt.signal, budget.elapsed
