"""`MetaLearner`: the `keras.Model` base class of every algorithm.

A meta-learner wraps a plain Keras model, the *learner*, and trains its
initialisation on episodes. One element of a dataset is a meta-batch of T tasks
in Keras's `(x, y)` form:

    x = {"support_x": [T, S, ...], "support_y": [T, S, ...],
         "query_x": [T, Q, ...]}
    y = query_y: [T, Q, ...]

Subclasses say how one task is adapted (`_adapt_task`) and, unless they keep
the default second-order meta-gradient, how a meta-batch trains
(`train_step`). This class supplies the rest: running the T tasks of a
meta-batch inside one graph (`tf.map_fn`, so nothing retraces per task),
`call`/`test_step`/`predict_step` with adapted query predictions, `adapt` for a
single task, input checks with clear errors, and `get_config`/`from_config`.

Batch-norm and other state. The learner always runs in training mode
(`training=True`), in the inner loop, on the query set and at evaluation, so
batch-norm normalises with the statistics of the batch it sees, as the MAML
reference code does (and Dropout, coupled to the same flag in Keras, stays
active). The moving statistics are carried through every call of a task and,
after each meta-training step, set to their mean over the tasks of the
meta-batch: they follow Keras's usual momentum update and serve only the bare
learner in inference mode (`learner(x, training=False)`); adaptation and
evaluation never read them. Evaluation leaves them untouched.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_meta import inner_loop
from keras_meta.atomic import atomic_path
from keras_meta.config import task_parallelism

EPISODE_KEYS = ("support_x", "support_y", "query_x")
BN_MODES = ("transductive", "non_transductive")


def _as_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_learner(learner):
    """Raises a clear error unless `learner` is a built Keras model with
    trainable variables and a single input and output."""
    if not isinstance(learner, keras.Model):
        raise TypeError(
            "learner must be a keras.Model (Sequential or functional), got "
            f"{type(learner).__name__}."
        )
    if not learner.built:
        raise ValueError(
            "The learner is not built, so its weights do not exist yet: give "
            "it an input shape (`keras.Input(shape)` as its first layer) or "
            "call `learner.build(input_shape)` before wrapping it."
        )
    if not learner.trainable_variables:
        raise ValueError(
            f"The learner {learner.name!r} has no trainable variables, so "
            "there is nothing to adapt or meta-learn. Unfreeze it "
            "(`learner.trainable = True`) or give it trainable layers."
        )
    if len(learner.inputs or [None]) != 1 or len(learner.outputs or [0]) != 1:
        raise ValueError(
            "The learner must have exactly one input and one output; got "
            f"{len(learner.inputs)} inputs and {len(learner.outputs)} outputs."
        )


@keras.saving.register_keras_serializable(package="keras_meta")
class MetaLearner(keras.Model):
    """Base class: a meta-learner over a wrapped Keras `learner`.

    Args:
        learner: a built `keras.Model` mapping `[batch, ...]` inputs to
            `[batch, ...]` outputs (logits for classification).
        inner_lr: step size of the inner loop.
        inner_steps: inner steps per task during meta-training.
        eval_inner_steps: inner steps per task in `evaluate`, `predict` and
            `model(x)`; defaults to `inner_steps`.
        bn_mode: `"transductive"` or `"non_transductive"`: which batch-norm
            statistics normalise query images at evaluation (see `bn_mode`).
        **kwargs: passed to `keras.Model` (for example `name`).
    """

    def __init__(
        self,
        learner,
        inner_lr=0.01,
        inner_steps=1,
        eval_inner_steps=None,
        bn_mode="transductive",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_learner(learner)
        if isinstance(inner_lr, bool) or not isinstance(
            inner_lr, (int, float, np.floating, np.integer)
        ):
            raise TypeError(f"inner_lr must be a number, got {inner_lr!r}.")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr}.")
        self.learner = learner
        self.inner_lr = float(inner_lr)
        self.inner_steps = inner_steps
        self.eval_inner_steps = (
            self.inner_steps if eval_inner_steps is None else eval_inner_steps
        )
        self._input_rank = len(learner.inputs[0].shape)
        self._batch_norm = inner_loop.BatchNormStatistics(learner)
        self.bn_mode = bn_mode
        # The learner is built, so is the meta-learner: Keras need not trace
        # a symbolic episode through the inner loop to create weights.
        self.built = True

    @property
    def bn_mode(self):
        """How evaluation normalises query batch-norm activations.

        `"transductive"`: with the statistics of the query batch itself
        (MAML's reference protocol; the learner runs in training mode).
        `"non_transductive"`: with the statistics of the task's support set
        alone, in inference mode, so that each query image is classified
        independently of the others (and Dropout is off). Meta-training is
        always transductive.
        """
        return self._bn_mode

    @bn_mode.setter
    def bn_mode(self, value):
        if value not in BN_MODES:
            raise ValueError(
                f"bn_mode must be one of {BN_MODES}, got {value!r}."
            )
        self._bn_mode = value
        self.test_function = None  # retrace with the new mode
        self.predict_function = None

    @property
    def inner_steps(self):
        """Inner steps per task during meta-training."""
        return self._inner_steps

    @inner_steps.setter
    def inner_steps(self, value):
        self._inner_steps = _as_int(value, "inner_steps", 0)
        self.train_function = None  # retrace with the new count

    @property
    def eval_inner_steps(self):
        """Inner steps per task in `evaluate`, `predict` and `model(x)`."""
        return self._eval_inner_steps

    @eval_inner_steps.setter
    def eval_inner_steps(self, value):
        self._eval_inner_steps = _as_int(value, "eval_inner_steps", 0)
        self.test_function = None  # retrace with the new count
        self.predict_function = None

    # ------------------------------------------------------------------
    # Per-task building blocks, shared by every algorithm.

    @property
    def task_loss(self):
        """`fn(y_true, y_pred) -> scalar`: the loss given to `compile`."""
        if (
            self.loss is None
            or getattr(self, "_task_loss_source", None) is not self.loss
        ):
            self._task_loss_fn = inner_loop.resolve_task_loss(self.loss)
            self._task_loss_source = self.loss
        return self._task_loss_fn

    def _weights_and_state(self):
        """The learner's current trainable and non-trainable values."""
        weights = [
            tf.convert_to_tensor(v) for v in self.learner.trainable_variables
        ]
        state = [
            tf.convert_to_tensor(v)
            for v in self.learner.non_trainable_variables
        ]
        return weights, state

    def _forward(self, weights, state, x):
        """Runs the learner with fast `weights` on a batch `x` [B, ...].

        Returns `(predictions [B, ...], new state)`; the state (batch-norm
        moving statistics, dropout seeds) is never differentiated.
        """
        y_pred, state = self.learner.stateless_call(
            weights, state, x, training=True
        )
        return y_pred, [tf.stop_gradient(s) for s in state]

    def _support_loss_fn(self, support_x, support_y):
        """`fn(weights, state) -> (loss, state)` on one task's support set."""

        def support_loss(weights, state):
            y_pred, state = self._forward(weights, state, support_x)
            return self.task_loss(support_y, y_pred), state

        return support_loss

    def _adapt_task(
        self, weights, state, support_x, support_y, steps, differentiable
    ):
        """Adapts `weights` (aligned with `learner.trainable_variables`) to
        one task; returns `(adapted weights, state)`. Subclasses define it."""
        raise NotImplementedError

    def _task_predictions(
        self,
        weights,
        state,
        support_x,
        support_y,
        query_x,
        steps,
        differentiable=False,
        transductive=True,
    ):
        """Adapts to one task, then predicts its query set `[Q, ...]`.

        Returns `(predictions, state)`. With `transductive=False` the query
        is normalised with the support set's batch-norm statistics.
        """
        fast, state = self._adapt_task(
            weights, state, support_x, support_y, steps, differentiable
        )
        if transductive:
            return self._forward(fast, state, query_x)
        y_pred = self._batch_norm.call(
            self.learner, fast, state, query_x, support_x
        )
        return y_pred, state

    def _map_tasks(self, fn, elems, fn_output_signature):
        """Runs `fn` on each task of a meta-batch, inside the graph.

        A `tf.while_loop` (through `tf.map_fn`) that keeps at most
        `keras_meta.config.task_parallelism()` tasks in flight (read when
        the step is traced): the bound on memory, since each task in flight
        holds its activations until its gradient is taken.
        """
        return tf.map_fn(
            fn,
            elems,
            fn_output_signature=fn_output_signature,
            parallel_iterations=task_parallelism(),
        )

    def _query_spec(self, query_x):
        """Spec of one task's predictions, for `tf.map_fn`."""
        spec = self.learner.compute_output_spec(
            keras.KerasTensor(query_x.shape[1:], dtype=query_x.dtype)
        )
        return tf.TensorSpec(spec.shape, spec.dtype)

    # ------------------------------------------------------------------
    # Episodes: unpacking and checks.

    def _unpack_episodes(self, x):
        """Checks an episode dict (static shapes only) and returns its three
        tensors `support_x, support_y, query_x`."""
        if not isinstance(x, dict):
            raise TypeError(
                f"{type(self).__name__} takes episodes: x must be a dict with "
                f"keys {EPISODE_KEYS}, got {type(x).__name__}. Build them "
                "with keras_meta.data (for example episodes_from_arrays)."
            )
        missing = [k for k in EPISODE_KEYS if k not in x]
        if missing:
            raise ValueError(
                f"The episode dict lacks {missing}; it must have keys "
                f"{EPISODE_KEYS}, got {sorted(x)}."
            )
        support_x, support_y, query_x = (
            tf.convert_to_tensor(x[k]) for k in EPISODE_KEYS
        )
        want = self._input_rank + 1
        if support_x.shape.rank != query_x.shape.rank:
            raise ValueError(
                "support_x and query_x must have the same rank [T, S, ...] "
                f"and [T, Q, ...]; got shapes {support_x.shape} and "
                f"{query_x.shape}."
            )
        if support_x.shape.rank != want:
            raise ValueError(
                f"Episode inputs must have rank {want}: a task axis T before "
                f"the learner's input rank {self._input_rank} "
                f"({self.learner.inputs[0].shape}); got support_x of shape "
                f"{support_x.shape}. For one task use `adapt`."
            )
        if support_x.shape[1] == 0:
            raise ValueError(
                "The support set is empty (support_x has shape "
                f"{support_x.shape}); each task needs at least one example."
            )
        if support_y.shape[:2] != support_x.shape[:2] and None not in (
            support_y.shape[:2] + support_x.shape[:2]
        ):
            raise ValueError(
                "support_y must have one label per support example: shapes "
                f"{support_y.shape} and {support_x.shape} disagree on [T, S]."
            )
        return support_x, support_y, query_x

    def _check_label_values(self, support_y, query_y):
        """Eager check that integer labels are valid class ids `0..N-1`."""
        ways = self._num_classes()
        if ways is None:
            return
        for name, labels in (("support_y", support_y), ("query_y", query_y)):
            if labels is None:
                continue
            labels = np.asarray(labels)
            if not np.issubdtype(labels.dtype, np.integer) or not labels.size:
                continue
            if labels.min() < 0 or labels.max() >= ways:
                raise ValueError(
                    f"{name} holds labels from {labels.min()} to "
                    f"{labels.max()}, but the learner has {ways} outputs, so "
                    f"labels must lie in 0..{ways - 1}. Build episodes with "
                    f"ways={ways}, or give the learner as many outputs as "
                    "ways."
                )

    def _num_classes(self):
        """Number of classes the learner scores, or None for regression."""
        units = self.learner.outputs[0].shape[-1]
        return units if units and units > 1 else None

    @staticmethod
    def _first_batch(x, y=None):
        """`(x, y)` of the first batch of what `fit`/`evaluate`/`predict`
        received (a dataset, read with a fresh iterator; or arrays), or
        None for other input types, which are left to Keras."""
        if isinstance(x, tf.data.Dataset):
            for batch in x.take(1):
                x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
                return x, y
            return None
        if isinstance(x, dict) or isinstance(x, (np.ndarray, tf.Tensor)):
            return x, y
        return None

    def _check_sample(self, x, y=None):
        """Checks a sample batch, so that bad episodes fail early with a
        clear `ValueError` rather than deep inside a compiled graph."""
        self._unpack_episodes(x)  # a TypeError unless x is an episode dict
        self._check_label_values(x.get("support_y"), y)

    def _check_first_batch(self, x, y=None):
        """Checks the first batch of `x` (see `_first_batch`); returns it."""
        sample = self._first_batch(x, y)
        if sample is not None:
            self._check_sample(*sample)
        return sample

    def _prepare(self, x, y=None):
        """Checks the first batch and keeps it to build the compiled loss
        and metrics from (see `_maybe_symbolic_build`)."""
        # A plain attribute, not tracked by Keras.
        self.__dict__["_build_sample"] = self._check_first_batch(x, y)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under tf.distribute, Keras builds the compiled loss and metrics
        # from a batch that it takes from the training iterator and averages
        # across replicas, which fails for episode dicts under
        # MultiWorkerMirroredStrategy. The first batch read by `_prepare`
        # serves instead (and no batch of the stream is spent on it).
        sample = self.__dict__.get("_build_sample")
        if (
            self._distribute_strategy is None
            or sample is None
            or not isinstance(sample[0], dict)
            or sample[1] is None
        ):
            return super()._maybe_symbolic_build(iterator, data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=sample)

    def fit(self, x=None, y=None, *args, **kwargs):
        if isinstance(x, tf.data.Dataset):
            # Episode streams are random already; Keras would warn that it
            # cannot shuffle a dataset.
            kwargs.setdefault("shuffle", False)
        self._prepare(x, y)
        validation = kwargs.get("validation_data")
        if isinstance(validation, tf.data.Dataset):
            self._check_first_batch(validation)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._prepare(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_first_batch(x)
        return super().predict(x, *args, **kwargs)

    # ------------------------------------------------------------------
    # Keras entry points.

    def adapt(self, support_x, support_y, steps=None):
        """Adapts the learner to ONE task (no task axis).

        Args:
            support_x: `[S, ...]` support inputs.
            support_y: `[S, ...]` support labels or targets.
            steps: inner steps; defaults to `eval_inner_steps`.

        Returns:
            A list of tensors aligned with `learner.trainable_variables`: the
            adapted weights. The learner's own variables are left untouched.
        """
        steps = (
            self.eval_inner_steps
            if steps is None
            else _as_int(steps, "steps", 0)
        )
        episode = self._unpack_episodes(
            {
                "support_x": tf.convert_to_tensor(support_x)[None],
                "support_y": tf.convert_to_tensor(support_y)[None],
                "query_x": tf.convert_to_tensor(support_x)[None],
            }
        )
        support_x, support_y = episode[0][0], episode[1][0]
        if tf.executing_eagerly():
            self._check_label_values(support_y, None)
        weights, state = self._weights_and_state()
        adapted, _ = self._adapt_task(
            weights, state, support_x, support_y, steps, differentiable=False
        )
        return adapted

    def call(self, inputs, training=None):
        """Adapted query predictions `[T, Q, ...]` of each task of `inputs`.

        Uses `inner_steps` when `training` is true, else `eval_inner_steps`.
        """
        support_x, support_y, query_x = self._unpack_episodes(inputs)
        steps = self.inner_steps if training else self.eval_inner_steps
        transductive = bool(training) or self.bn_mode == "transductive"
        weights, state = self._weights_and_state()

        def one_task(task):
            y_pred, _ = self._task_predictions(
                weights, state, *task, steps, transductive=transductive
            )
            return y_pred

        return self._map_tasks(
            one_task,
            (support_x, support_y, query_x),
            fn_output_signature=self._query_spec(query_x),
        )

    def compute_output_spec(self, inputs, training=None):
        query_x = inputs["query_x"]
        spec = self._query_spec(query_x)
        return keras.KerasTensor(
            (query_x.shape[0],) + tuple(spec.shape), dtype=spec.dtype.name
        )

    def _update_metrics(self, x, y, y_pred, loss, num_tasks):
        self._loss_tracker.update_state(loss, sample_weight=num_tasks)
        logs = self.compute_metrics(x, y, y_pred)
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras averages logs across workers along axis 0, which a
            # scalar lacks (keras-team/keras#20585): give them one.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data):
        """One meta-update over the T tasks of a meta-batch.

        Each task gives a list shaped like the learner's weights
        (`_task_update`); their mean over tasks becomes the meta-gradient
        (`_meta_gradients`) handed to the compiled optimizer. The default,
        MAML's: per task, adapt with `inner_steps` (recorded on a tape when
        `self._second_order`) and differentiate the query loss with respect
        to the initialisation.
        """
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        support_x, support_y, query_x = self._unpack_episodes(x)
        if y is None:
            raise ValueError(
                "Meta-training needs query labels: pass (x, query_y) episodes."
            )
        weights, state = self._weights_and_state()
        loss_dtype = losses_dtype(self.learner)

        def one_task(task):
            per_task, loss, y_pred, new_state = self._task_update(
                weights, state, *task
            )
            return per_task, tf.cast(loss, loss_dtype), y_pred, new_state

        per_task, losses, y_pred, new_state = self._map_tasks(
            one_task,
            (support_x, support_y, query_x, y),
            fn_output_signature=(
                [tf.TensorSpec(w.shape, w.dtype) for w in weights],
                tf.TensorSpec([], loss_dtype),
                self._query_spec(query_x),
                [tf.TensorSpec(s.shape, s.dtype) for s in state],
            ),
        )
        means = [tf.reduce_mean(v, axis=0) for v in per_task]
        self._apply_meta_gradients(self._meta_gradients(weights, means))
        self._assign_state(new_state)
        return self._update_metrics(
            x, y, y_pred, tf.reduce_mean(losses), tf.shape(support_x)[0]
        )

    def _task_update(
        self, weights, state, support_x, support_y, query_x, query_y
    ):
        """One task's contribution: `(list shaped like weights, query loss,
        query predictions, state)`. Here the gradient of the query loss
        after adaptation with respect to the initialisation."""
        # Fresh tensors inside the loop body, so the tape can watch them.
        init = [tf.identity(w) for w in weights]
        with tf.GradientTape() as tape:
            tape.watch(init)
            y_pred, new_state = self._task_predictions(
                init,
                state,
                support_x,
                support_y,
                query_x,
                self.inner_steps,
                self._second_order,
            )
            loss = self.task_loss(query_y, y_pred)
        grads = inner_loop.zeros_for_none(tape.gradient(loss, init), init)
        return grads, loss, y_pred, new_state

    def _meta_gradients(self, weights, task_means):
        """The gradient for the optimizer from the mean over tasks of
        `_task_update`'s lists: here that mean itself."""
        del weights
        return task_means

    def _apply_meta_gradients(self, grads):
        """Hands the mean over this replica's tasks to the optimizer.

        Under `tf.distribute`, each replica holds T / R tasks and the
        optimizer sums the gradients of the R replicas, so each is divided
        by R first: the update is then the mean over all T tasks, the same
        as on one device.
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            grads = [g / replicas for g in grads]
        self.optimizer.apply_gradients(
            zip(grads, self.learner.trainable_variables)
        )

    @property
    def _second_order(self):
        """Whether the meta-gradient goes through the inner steps."""
        return True

    def _assign_state(self, task_states):
        """Sets the learner's non-trainable variables from per-task values
        `[T, ...]`: float state (moving statistics) to the mean over tasks
        (over all replicas' tasks under `tf.distribute`), other state (random
        seeds) to the last task's."""
        context = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for variable, values in zip(
            self.learner.non_trainable_variables, task_states
        ):
            if variable.dtype.startswith(("float", "bfloat")):
                value = tf.reduce_mean(values, axis=0)
                if context is not None and replicas > 1:
                    value = context.all_reduce(
                        tf.distribute.ReduceOp.MEAN, value
                    )
                variable.assign(value)
            else:
                variable.assign(values[-1])

    def test_step(self, data):
        """Adapts every task with `eval_inner_steps` and scores its query."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self.task_loss(y, y_pred)
        return self._update_metrics(x, y, y_pred, loss, tf.shape(y_pred)[0])

    def predict_step(self, data):
        """Adapted query predictions `[T, Q, ...]`."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    # ------------------------------------------------------------------
    # Saving and deployment.

    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, written atomically (temporary file, rename)."""
        filepath = os.fspath(filepath)
        if not filepath.endswith(".keras"):
            return super().save(filepath, overwrite=overwrite, **kwargs)
        if os.path.exists(filepath) and not overwrite:
            raise ValueError(f"{filepath} exists and overwrite=False.")
        with atomic_path(filepath, suffix=".keras") as staged:
            super().save(staged, **kwargs)

    def serving_signature(self):
        """`tf.TensorSpec`s of the one-task serving function:
        `support_x [S, ...]`, `support_y [S]` (or `[S, d]` for regression),
        `query_x [Q, ...]`, with S and Q dynamic."""
        input_spec = self.learner.inputs[0]
        x_spec = tf.TensorSpec([None, *input_spec.shape[1:]], input_spec.dtype)
        if self._num_classes() is not None:
            y_spec = tf.TensorSpec([None], tf.int32)
        else:
            output_shape = self.learner.outputs[0].shape[1:]
            y_spec = tf.TensorSpec(
                [None, *output_shape], self.learner.outputs[0].dtype
            )
        return {"support_x": x_spec, "support_y": y_spec, "query_x": x_spec}

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=False,
        steps=None,
        **kwargs,
    ):
        """Writes a SavedModel that adapts to one task and predicts.

        Its serving signature (`serving_default`, also `serve`) takes ONE task
        `support_x [S, ...]`, `support_y [S]` (int32 labels; `[S, d]` float
        targets for regression) and `query_x [Q, ...]`, runs `steps` inner
        steps (default `eval_inner_steps`) inside the graph, gradients
        included, and returns `{"logits": [Q, N]}` (`{"predictions": ...}`
        for regression), with batch-norm as `bn_mode` says. S and Q are
        dynamic. It loads with `tf.saved_model.load` alone, without
        keras_meta, and works with `saved_model_cli`. The folder is written
        atomically.
        """
        if format != "tf_saved_model":
            raise ValueError(
                f"{type(self).__name__}.export writes format="
                f"'tf_saved_model' only, got format={format!r}."
            )
        steps = (
            self.eval_inner_steps
            if steps is None
            else _as_int(steps, "steps", 0)
        )
        spec = self.serving_signature()
        output_key = (
            "logits" if self._num_classes() is not None else "predictions"
        )
        transductive = self.bn_mode == "transductive"

        def serve(support_x, support_y, query_x):
            weights, state = self._weights_and_state()
            y_pred, _ = self._task_predictions(
                weights,
                state,
                support_x,
                support_y,
                query_x,
                steps,
                transductive=transductive,
            )
            return {output_key: y_pred}

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint(
            "serve",
            serve,
            input_signature=[
                spec["support_x"],
                spec["support_y"],
                spec["query_x"],
            ],
        )
        with atomic_path(filepath) as staged:
            archive.write_out(staged, verbose=verbose)

    # ------------------------------------------------------------------
    # Serialisation.

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "learner": keras.saving.serialize_keras_object(self.learner),
            "inner_lr": self.inner_lr,
            "inner_steps": self.inner_steps,
            "eval_inner_steps": self.eval_inner_steps,
            "bn_mode": self.bn_mode,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        learner = keras.saving.deserialize_keras_object(config.pop("learner"))
        return cls(learner, **config)


def _multi_worker(strategy):
    """Whether `strategy` spans several workers (MultiWorkerMirrored)."""
    extended = getattr(strategy, "extended", None)
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and getattr(extended, "_num_workers", 1) > 1
    )


def losses_dtype(learner):
    """The float dtype in which task losses are computed."""
    dtype = learner.outputs[0].dtype
    return dtype if dtype in ("float32", "float64") else "float32"
