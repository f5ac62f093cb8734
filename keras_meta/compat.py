"""Every use of Keras's and TensorFlow's private API, in one place.

keras-meta needs a few things neither library makes public. Each is named
here, with the form it has in the versions setup.cfg pins (Keras 3.15,
TensorFlow 2.21); `tests/test_compat.py` checks every entry of
`PRIVATE_API` by name against the installed versions, so an upgrade that
changes one fails there, loudly, instead of quietly changing behaviour
elsewhere. Lifting the Keras pin means reviewing this file and that test.
"""

import inspect

import keras

# (owner, attribute, parameters of its signature or None for a plain
# attribute, what keras-meta uses it for)
PRIVATE_API = (
    (
        keras.Model,
        "_flatten_layers",
        ("self", "include_self", "recursive"),
        "every layer of a learner, nested models included",
    ),
    (
        keras.Model,
        "_maybe_symbolic_build",
        ("self", "iterator", "data_batch"),
        "overridden: build compiled metrics from a kept episode "
        "(keras-team/keras#20585)",
    ),
    (
        keras.Model,
        "_symbolic_build",
        ("self", "iterator", "data_batch"),
        "called by that override",
    ),
    (
        keras.layers.BatchNormalization,
        "_moments",
        ("self", "inputs", "mask"),
        "overridden: exact second derivatives of the batch variance",
    ),
)


def signature(owner, name):
    """The parameter names of `owner.name`, or None if it is missing."""
    member = getattr(owner, name, None)
    if member is None:
        return None
    return tuple(inspect.signature(member).parameters)


def flatten_layers(model):
    """Every layer of `model`, nested models' layers included, in order."""
    return list(model._flatten_layers(include_self=False))


def loss_tracker(model):
    """The `keras.metrics.Mean` a compiled model reports as `loss`."""
    return model._loss_tracker


def own_variables(layer):
    """The variables `layer` created itself, in the order Keras saves them
    (`load_own_variables`), not those of its sublayers."""
    return layer._trainable_variables + layer._non_trainable_variables


def distribute_strategy(model):
    """The strategy the model was built under, or None outside any."""
    return model._distribute_strategy


def symbolic_build(model, data_batch):
    """Keras's build of the compiled loss and metrics from a batch."""
    model._symbolic_build(data_batch=data_batch)


def num_workers(strategy):
    """How many workers a `tf.distribute` strategy spans (1 for one that
    does not say: MultiWorkerMirroredStrategy's extended object does)."""
    return getattr(getattr(strategy, "extended", None), "_num_workers", 1)


def reduction_axes(layer):
    """The axes a batch-norm layer reduces over for its statistics."""
    return layer._reduction_axes


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels, or None if this
    TensorFlow cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())
