"""Argument checks shared by the models and the data pipelines."""

import keras
import numpy as np


def check_count(value, name, minimum=0):
    """`value` as an int >= `minimum`, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_rate(value, name="inner_lr"):
    """`value` as a positive finite float, or a clear error."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.floating, np.integer)
    ):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}.")
    return float(value)


def check_bool(value, name):
    """`value` if it is True or False, else a clear error."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def check_learner(learner):
    """Raises a clear error unless `learner` is a built Keras model with
    trainable variables and a single input and output."""
    if not isinstance(learner, keras.Model):
        raise TypeError(
            "learner must be a keras.Model (Sequential or functional), got "
            f"{type(learner).__name__}."
        )
    # A functional model (or a built Sequential) has symbolic inputs; a
    # subclassed model has none.
    subclassed = not isinstance(learner, keras.Sequential) and (
        getattr(learner, "inputs", None) is None
    )
    if subclassed:
        raise TypeError(
            f"The learner {type(learner).__name__} is a subclassed "
            "keras.Model: keras-meta reads a learner's input and output "
            "shapes and splits it into its layers (ANIL's head, the "
            "analyses), which a subclassed model does not expose. Build it "
            "as a keras.Sequential or a functional keras.Model (keras.Input "
            "-> layers -> keras.Model(inputs, outputs)); any standard layer "
            "works."
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
