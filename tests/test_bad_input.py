"""Bad input fails early with a ValueError/TypeError that says what is wrong."""

import keras
import numpy as np
import pytest

import keras_meta

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def classifier(ways=3):
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(ways),
        ]
    )


def compiled_maml(ways=3):
    model = keras_meta.MAML(classifier(ways), inner_lr=0.1)
    model.compile(optimizer="sgd", loss=LOSS)
    return model


def episode(tasks=2, shots=3, queries=3, ways=3, dim=4):
    rng = np.random.default_rng(0)
    x = {
        "support_x": rng.random((tasks, shots, dim), dtype=np.float32),
        "support_y": rng.integers(0, ways, (tasks, shots)),
        "query_x": rng.random((tasks, queries, dim), dtype=np.float32),
    }
    return x, rng.integers(0, ways, (tasks, queries))


def test_support_and_query_of_different_ranks():
    x, y = episode()
    x["query_x"] = x["query_x"][..., None]
    with pytest.raises(ValueError, match="query_x must have rank 3"):
        compiled_maml().fit(x, y, verbose=0)


def test_labels_not_below_ways():
    x, y = episode()
    x["support_y"][0, 0] = 3
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        compiled_maml().fit(x, y, verbose=0)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(episode())
    bad_query = dataset.map(lambda x, y: (x, y + 5))
    with pytest.raises(ValueError, match="query_y holds labels"):
        compiled_maml().evaluate(bad_query, verbose=0)
    with pytest.raises(ValueError, match="support_y holds labels"):
        compiled_maml().adapt(x["support_x"][0], x["support_y"][0])


def test_empty_support_set():
    x, y = episode(shots=0)
    with pytest.raises(ValueError, match="support set is empty"):
        compiled_maml().fit(x, y, verbose=0)


def test_episode_without_task_axis():
    x, y = episode()
    x = {k: v[0] for k, v in x.items()}
    with pytest.raises(ValueError, match="task axis"):
        compiled_maml().predict(x, verbose=0)


def test_not_a_dict_of_episodes():
    with pytest.raises(TypeError, match="takes episodes"):
        compiled_maml().predict(np.zeros((2, 3, 4)), verbose=0)


def test_learner_without_trainable_variables():
    learner = classifier()
    learner.trainable = False
    with pytest.raises(ValueError, match="no trainable variables"):
        keras_meta.MAML(learner)
    with pytest.raises(ValueError, match="no trainable variables"):
        keras_meta.Reptile(
            keras.Sequential([keras.Input((4,)), keras.layers.Flatten()])
        )


def test_unbuilt_learner_and_wrong_types():
    with pytest.raises(ValueError, match="not built"):
        keras_meta.MAML(keras.Sequential([keras.layers.Dense(3)]))
    with pytest.raises(TypeError, match="keras.Model"):
        keras_meta.ANIL(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="inner_lr must be positive"):
        keras_meta.MAML(classifier(), inner_lr=-0.1)
    with pytest.raises(TypeError, match="inner_steps must be an int"):
        keras_meta.MAML(classifier(), inner_steps=1.5)
    with pytest.raises(ValueError, match="inner_optimizer"):
        keras_meta.Reptile(classifier(), inner_optimizer="rmsprop")
    with pytest.raises(
        TypeError, match='recompute must be True, False or "auto"'
    ):
        keras_meta.MAML(classifier(), recompute="yes")
    with pytest.raises(ValueError, match="head_layers=2 leaves no body"):
        keras_meta.ANIL(classifier(), head_layers=2)
    with pytest.raises(ValueError, match="needs ways=N"):
        keras_meta.Pretrain(classifier())


def test_uncompiled_model_names_the_fix():
    model = keras_meta.MAML(classifier(), inner_lr=0.1)
    x, _ = episode()
    with pytest.raises(ValueError, match="compile"):
        model.adapt(x["support_x"][0], x["support_y"][0])


def test_bad_episode_arguments():
    images = np.zeros((12, 2))
    labels = np.repeat(np.arange(4), 3)
    with pytest.raises(ValueError, match="ways=5 is more than the 4 classes"):
        keras_meta.data.episodes_from_arrays(images, labels, 5, 1, 1, 2)
    with pytest.raises(ValueError, match=r"2 \+ 2 = 4 images per class"):
        keras_meta.data.episodes_from_arrays(images, labels, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="differ in length"):
        keras_meta.data.episodes_from_arrays(images[:5], labels, 2, 1, 1, 2)
    with pytest.raises(TypeError, match="shots must be an int"):
        keras_meta.data.episodes_from_arrays(images, labels, 2, "1", 1, 2)


def test_vectorized_tasks_need_the_default_task_update():
    class Custom(keras_meta.MAML):
        vectorize_tasks = True

        def task_update(self, weights, state, task):
            return super().task_update(weights, state, task)

    learner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(TypeError, match="vectorize_tasks"):
        Custom(learner)


def balanced_episode(tasks=2, ways=3, shots=2, dim=4):
    """Every task labels its classes 0..ways-1, as N-way K-shot tasks do."""
    x, _ = episode(tasks, ways * shots, ways * shots, ways, dim)
    labels = np.tile(np.repeat(np.arange(ways), shots), (tasks, 1))
    x["support_y"] = labels
    return x, labels.copy()


def test_a_subclassed_learner_is_refused_with_what_works():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def build(self, shape):
            self.dense.build(shape)

        def call(self, x):
            return self.dense(x)

    learner = Subclassed()
    learner.build((None, 4))
    with pytest.raises(TypeError, match="subclassed keras.Model.*functional"):
        keras_meta.MAML(learner)


def test_integer_images_are_refused_with_the_fix():
    x, y = balanced_episode()
    x["support_x"] = (255 * x["support_x"]).astype(np.uint8)
    with pytest.raises(
        TypeError, match=r"uint8 values.*scale them to \[0, 1\]"
    ):
        compiled_maml().fit(x, y, verbose=0)


def test_sample_weights_of_the_wrong_shape_or_sign():
    x, y = balanced_episode()  # 2 tasks of 6 queries
    for weight in (np.ones((3, 1)), np.ones((2, 5)), np.ones((2, 6, 1))):
        with pytest.raises(ValueError, match=r"T=2 tasks of Q=6 queries"):
            compiled_maml().fit(x, y, sample_weight=weight, verbose=0)
    with pytest.raises(ValueError, match="negative weights"):
        compiled_maml().fit(
            x, y, sample_weight=np.array([1.0, -0.5]), verbose=0
        )


def test_more_learner_outputs_than_ways_is_refused():
    x, y = balanced_episode(ways=3)
    with pytest.raises(
        ValueError, match="5 outputs, but the episodes are 3-way"
    ):
        compiled_maml(ways=5).fit(x, y, verbose=0)
    compiled_maml(ways=3).fit(x, y, verbose=0)  # as many outputs as ways
