"""Argument checks shared by the models and the data pipelines."""

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
