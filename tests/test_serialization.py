"""Save and reload round trips (`.keras`), for every algorithm."""

import keras
import numpy as np
import pytest

import keras_meta

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def small_conv(ways=3):
    return keras_meta.models.conv4(ways, input_shape=(16, 16, 1), filters=4)


def episodes(ways=3, shots=2, queries=2, tasks=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((ways * 8, 16, 16, 1)).astype("float32")
    labels = np.repeat(np.arange(ways * 2), 4)
    return keras_meta.data.episodes_from_arrays(
        images, labels, ways, shots, queries, tasks, seed=seed
    )


MODELS = {
    "maml": lambda: keras_meta.MAML(small_conv(), inner_lr=0.3, inner_steps=2),
    "fomaml": lambda: keras_meta.MAML(
        small_conv(), inner_lr=0.3, first_order=True, eval_inner_steps=3
    ),
    "anil": lambda: keras_meta.ANIL(small_conv(), inner_lr=0.3, head_layers=1),
    # With the shared Adam state, which the round trip must keep.
    "reptile": lambda: keras_meta.Reptile(
        small_conv(),
        inner_lr=0.01,
        inner_optimizer="adam",
        inner_steps=3,
        shared_adam_state=True,
    ),
    "pretrain": lambda: keras_meta.Pretrain(
        small_conv(6), ways=3, inner_lr=0.3, eval_inner_steps=4
    ),
    "boil": lambda: keras_meta.BOIL(small_conv(), inner_lr=0.3),
    "imaml": lambda: keras_meta.IMAML(
        small_conv(), inner_lr=0.1, inner_steps=3, cg_steps=2
    ),
    "protonet": lambda: keras_meta.ProtoNet(small_conv(None), ways=3),
    "protomaml": lambda: keras_meta.ProtoMAML(
        small_conv(None), ways=3, inner_lr=0.3
    ),
}


@pytest.mark.integration  # through files or a compiler: second tier
@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_and_load_round_trip(tmp_path, name):
    model = MODELS[name]()
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    data = episodes()
    if name == "pretrain":
        rng = np.random.default_rng(1)
        model.fit(
            rng.random((12, 16, 16, 1)).astype("float32"),
            np.arange(12) % 6,
            batch_size=6,
            verbose=0,
        )
    else:
        model.fit(data, steps_per_epoch=2, verbose=0)
    sample = next(iter(data))[0]
    expected = model.predict_on_batch(sample)
    assert np.all(np.isfinite(expected)), "training left non-finite weights"

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(model)

    def settings(m):
        return {k: v for k, v in m.get_config().items() if k != "learner"}

    assert settings(loaded) == settings(model)
    assert [type(layer) for layer in loaded.learner.layers] == [
        type(layer) for layer in model.learner.layers
    ]
    for a, b in zip(model.learner.weights, loaded.learner.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The algorithm's own state too (Reptile's shared Adam moments).
    assert len(model.weights) == len(loaded.weights)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(
        loaded.predict_on_batch(sample), expected, atol=1e-6, rtol=0
    )
    # Evaluation of the reloaded model works without recompiling.
    assert np.isfinite(loaded.evaluate(data, steps=1, verbose=0)[0])
