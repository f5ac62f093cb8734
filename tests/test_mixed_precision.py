"""Mixed precision: under mixed_float16 (Keras wraps the optimizer in a
LossScaleOptimizer that divides every gradient by its loss scale) and
mixed_bfloat16, one meta-update equals float32's within the precision of
half-precision arithmetic."""

import keras
import numpy as np
import pytest

import keras_meta

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)
X = {
    "support_x": RNG.normal(size=(4, 6, 8)).astype("float32"),
    "support_y": np.tile(np.repeat(np.arange(3), 2), (4, 1)),
    "query_x": RNG.normal(size=(4, 9, 8)).astype("float32"),
}
Y = np.tile(np.repeat(np.arange(3), 3), (4, 1))


def meta_update(policy, algorithm):
    """The change one `train_on_batch` makes to the learner's weights."""
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        learner = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(3),
            ]
        )
        if algorithm == "reptile":
            model = keras_meta.Reptile(
                learner, inner_lr=0.1, inner_steps=2, inner_optimizer="sgd"
            )
        else:
            model = keras_meta.MAML(learner, inner_lr=0.3, inner_steps=2)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS)
        before = [w.numpy() for w in learner.trainable_weights]
        model.train_on_batch(X, Y)
        after = [w.numpy() for w in learner.trainable_weights]
    finally:
        keras.config.set_dtype_policy("float32")
    return np.concatenate([(a - b).ravel() for a, b in zip(after, before)])


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
@pytest.mark.parametrize(
    "policy, tolerance", [("mixed_float16", 0.005), ("mixed_bfloat16", 0.02)]
)
def test_a_mixed_precision_update_equals_float32s(algorithm, policy, tolerance):
    exact = meta_update("float32", algorithm)
    mixed = meta_update(policy, algorithm)
    assert np.linalg.norm(exact) > 1e-3  # a real update to compare
    error = np.linalg.norm(mixed - exact) / np.linalg.norm(exact)
    assert error < tolerance, error
