"""The private Keras and TensorFlow API keras-meta uses, checked by name
against the installed versions: an upgrade that changes one fails here."""

import inspect

import keras
import pytest

import keras_meta
from keras_meta import compat


@pytest.mark.parametrize(
    "owner, name, parameters, why",
    compat.PRIVATE_API,
    ids=[f"{o.__name__}.{n}" for o, n, _, _ in compat.PRIVATE_API],
)
def test_private_api_has_the_form_keras_meta_uses(owner, name, parameters, why):
    assert compat.signature(owner, name) == parameters, (
        f"{owner.__name__}.{name} ({why}) changed; review keras_meta/compat.py"
    )


def test_private_attributes_hold_what_keras_meta_reads():
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs))
    inner = keras.Model(inputs, hidden)
    outer_inputs = keras.Input((4,))
    learner = keras.Model(
        outer_inputs, keras.layers.Dense(2)(inner(outer_inputs))
    )
    # Every layer once, the nested model's own layers included.
    flat = compat.flatten_layers(learner)
    expected = [*learner.layers, *inner.layers]
    assert sorted(id(layer) for layer in flat) == sorted(map(id, expected))
    batch_norm = inner.layers[-1]
    assert tuple(compat.reduction_axes(batch_norm)) == (0,)
    model = keras_meta.MAML(learner, inner_lr=0.1)
    model.compile(optimizer="sgd", loss="mse")
    assert isinstance(compat.loss_tracker(model), keras.metrics.Mean)
    assert compat.distribute_strategy(model) is None
    assert compat.own_variables(batch_norm) == [
        batch_norm.gamma,
        batch_norm.beta,
        batch_norm.moving_mean,
        batch_norm.moving_variance,
    ]
    assert compat.onednn_enabled() in (True, False)
    # The worker count of a multi-worker strategy (not built here: it would
    # start TensorFlow's collective runtime in the test process).
    from tensorflow.python.distribute import collective_all_reduce_strategy

    source = inspect.getsource(
        collective_all_reduce_strategy.CollectiveAllReduceExtended
    )
    assert "self._num_workers = " in source
