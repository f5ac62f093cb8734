"""Deployment: a SavedModel that adapts to one task and predicts.

The serving signature takes ONE task, `support_x [S, ...]`, `support_y [S]`
(int32 class ids; `[S, d]` float targets for regression) and `query_x [Q,
...]`, runs the inner loop inside the graph, gradients included, and returns
`{"logits": [Q, N]}` (`{"predictions": [Q, d]}` for regression). Its inputs
are declared without a fixed shape so that every request is checked inside
the graph (`task_inputs.unpack_task`): ranks, the learner's image shape, label
range and count, empty sets. A bad request gets an `InvalidArgumentError`
that says what is wrong; none can reach, and crash, a kernel.
"""

import json
import os

import keras
import tensorflow as tf

from keras_meta.atomic import atomic_path
from keras_meta.checks import check_count
from keras_meta.engine import task_inputs


def serving_signature(model):
    """`tf.TensorSpec`s of the serving function's three inputs."""
    x_dtype = model.learner.inputs[0].dtype
    if model.learner_spec.num_classes is not None:
        y_spec = tf.TensorSpec(None, tf.int32, name="support_y")
    else:
        y_spec = tf.TensorSpec(
            None, model.learner.outputs[0].dtype, "support_y"
        )
    return [
        tf.TensorSpec(None, x_dtype, name="support_x"),
        y_spec,
        tf.TensorSpec(None, x_dtype, name="query_x"),
    ]


def serving_function(model, steps):
    """`fn(support_x, support_y, query_x) -> {name: [Q, ...]}` for one task,
    adapted with `steps` inner steps under the model's `bn_mode`."""
    spec = model.learner_spec
    output_key = "logits" if spec.num_classes is not None else "predictions"

    def serve(support_x, support_y, query_x):
        support_x, support_y, query_x = task_inputs.unpack_task(
            support_x, support_y, query_x, spec
        )
        y_pred = model.adapted_task_predictions(
            support_x, support_y, query_x, steps, model.bn_mode
        )
        return {output_key: y_pred}

    return serve


# Where an export keeps what serving it needs besides the graph: the
# SavedModel's own folder for extra files, read back by `read_metadata`.
METADATA = os.path.join("assets.extra", "keras_meta.json")


def export(model, filepath, steps, verbose=False, metadata=None):
    """Writes the SavedModel to `filepath`, atomically (a temporary folder
    beside it, then a rename), with `metadata` (a JSON-able dict, such as
    how the images were prepared) in `assets.extra/keras_meta.json`."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        serving_function(model, steps),
        input_signature=serving_signature(model),
    )
    record = {
        "ways": model.learner_spec.num_classes,
        "input_shape": list(model.learner_spec.input_shape),
        "inner_steps": steps,
        "bn_mode": model.bn_mode,
        **(metadata or {}),
    }
    with atomic_path(filepath) as staged:
        archive.write_out(staged, verbose=verbose)
        os.makedirs(os.path.join(staged, "assets.extra"), exist_ok=True)
        with open(os.path.join(staged, METADATA), "w") as f:
            json.dump(record, f, indent=2)


def read_metadata(filepath):
    """The dict `export` recorded beside a SavedModel, or None (a model
    exported before keras-meta recorded it)."""
    path = os.path.join(os.fspath(filepath), METADATA)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class Saving:
    """`save` written atomically and `export` as the SavedModel above (a
    mixin of `MetaLearner`)."""

    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, written atomically (temporary file, rename)."""
        filepath = os.fspath(filepath)
        if not filepath.endswith(".keras"):
            return super().save(filepath, overwrite=overwrite, **kwargs)
        if os.path.exists(filepath) and not overwrite:
            raise ValueError(f"{filepath} exists and overwrite=False.")
        with atomic_path(filepath, suffix=".keras") as staged:
            super().save(staged, **kwargs)

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=False,
        steps=None,
        metadata=None,
        **kwargs,
    ):
        """Writes a SavedModel whose serving signature adapts to ONE task
        with `steps` inner steps (default `eval_inner_steps`) and predicts
        its queries (`keras_meta.engine.serving`). Loads with
        `tf.saved_model.load` alone, without keras_meta. Its
        `assets.extra/keras_meta.json` records the ways, input shape, steps
        and batch-norm mode, and `metadata` (the scripts add how the images
        were prepared, for `keras-meta predict`)."""
        if format != "tf_saved_model":
            raise ValueError(
                f"{type(self).__name__}.export writes format="
                f"'tf_saved_model' only, got format={format!r}."
            )
        steps = self.eval_inner_steps if steps is None else steps
        export(self, filepath, check_count(steps, "steps"), verbose, metadata)
