"""Real training runs, short enough for the default suite."""

import keras
import numpy as np
import pytest

import keras_meta
from keras_meta.data.omniglot import load_arrays

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration


def test_maml_sinusoid_adapts_better_than_unadapted_and_pretrained():
    """The MAML paper's Figure 2 effect, after 1,000 meta-iterations.

    After one inner step (alpha = 0.01, K = 10) the MAML initialisation fits
    a new sinusoid better than before the step, and better than a jointly
    pre-trained network adapted by the same step.
    """
    keras.utils.set_random_seed(0)
    maml = keras_meta.MAML(keras_meta.models.mlp(), inner_lr=0.01)
    maml.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    maml.fit(keras_meta.data.sinusoid(seed=1), steps_per_epoch=1000, verbose=0)
    pretrain = keras_meta.Pretrain(
        keras_meta.models.mlp(),
        adaptation="fine_tune",
        inner_lr=0.01,
        eval_inner_steps=1,
    )
    pretrain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    pretrain.fit(
        keras_meta.data.sinusoid(seed=2), steps_per_epoch=1000, verbose=0
    )

    test_tasks = keras_meta.data.sinusoid(seed=3).take(20)
    maml_adapted = maml.evaluate(test_tasks, verbose=0)
    maml.eval_inner_steps = 0
    maml_unadapted = maml.evaluate(test_tasks, verbose=0)
    pretrain_adapted = pretrain.evaluate(test_tasks, verbose=0)
    # The query MSE of a random sinusoid predicted by 0 is about 4.2.
    assert maml_adapted < 0.6 * maml_unadapted
    assert maml_adapted < 0.6 * pretrain_adapted


@pytest.fixture(scope="module")
def small_omniglot():
    """Omniglot's `small1` (136 characters, 20 images each), by character:
    100 characters to meta-train on, 36 held out."""
    from conftest import shared_data_dir

    images, labels, _ = load_arrays(
        "small1", 28, str(shared_data_dir() / "tfds"), download=False
    )
    characters = np.unique(labels)
    train = np.isin(labels, characters[:100])
    return (images[train], labels[train]), (images[~train], labels[~train])


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize(
    "name, make, optimizer",
    [
        (
            "maml",
            lambda learner: keras_meta.MAML(learner, inner_lr=0.4),
            "adam",
        ),
        (
            "anil",
            lambda learner: keras_meta.ANIL(
                learner, inner_lr=0.4, eval_inner_steps=5
            ),
            "adam",
        ),
        (
            "reptile",
            lambda learner: keras_meta.Reptile(
                learner,
                inner_lr=0.1,
                inner_steps=5,
                eval_inner_steps=10,
                inner_optimizer="sgd",
            ),
            "sgd",
        ),
    ],
)
def test_conv4_beats_chance_on_held_out_omniglot_characters(
    small_omniglot, name, make, optimizer
):
    """100 meta-iterations of 8 tasks; 5-way 1-shot on unseen characters,
    where chance is 20%."""
    keras.utils.set_random_seed(0)
    (train_x, train_y), (test_x, test_y) = small_omniglot
    train = keras_meta.data.episodes_from_arrays(
        train_x, train_y, ways=5, shots=1, queries=5, meta_batch=8, seed=1
    )
    test = keras_meta.data.episodes_from_arrays(
        test_x, test_y, ways=5, shots=1, queries=5, meta_batch=20, seed=2
    )
    model = make(keras_meta.models.conv4(5, filters=32, pooling="stride"))
    model.compile(
        optimizer=(
            keras.optimizers.Adam(1e-3)
            if optimizer == "adam"
            else keras.optimizers.SGD(1.0)
        ),
        loss=LOSS,
        metrics=["accuracy"],
    )
    model.fit(train, steps_per_epoch=100, verbose=0)
    result = model.evaluate(test, steps=5, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.35, result
