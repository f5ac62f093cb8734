"""Episode streams: class and example structure, seeds, sinusoid tasks."""

import math

import numpy as np
import pytest

import keras_meta


def identity_images(classes=10, per_class=7):
    """Image i holds the number i, so episodes reveal what they drew."""
    labels = np.repeat(np.arange(classes) * 3 + 100, per_class)  # any ids
    images = np.arange(len(labels), dtype=np.float32)[:, None]
    return images, labels


def drawn(episode):
    x, y = episode
    return (
        x["support_x"].numpy()[..., 0].astype(int),
        x["support_y"].numpy(),
        x["query_x"].numpy()[..., 0].astype(int),
        y.numpy(),
    )


@pytest.mark.parametrize("ways, shots, queries", [(5, 1, 5), (3, 2, 4)])
def test_episode_structure(ways, shots, queries):
    images, labels = identity_images()
    dataset = keras_meta.data.episodes_from_arrays(
        images, labels, ways, shots, queries, meta_batch=6, seed=3
    )
    for episode in dataset.take(3):
        support, support_y, query, query_y = drawn(episode)
        assert support.shape == (6, ways * shots)
        assert query.shape == (6, ways * queries)
        for t in range(6):
            true_support = labels[support[t]]
            true_query = labels[query[t]]
            # N distinct classes, labels 0..N-1, one label per class.
            assert sorted(set(support_y[t])) == list(range(ways))
            assert len(set(true_support)) == ways
            for label in range(ways):
                classes = set(true_support[support_y[t] == label])
                assert len(classes) == 1
                assert set(true_query[query_y[t] == label]) == classes
                assert (support_y[t] == label).sum() == shots
                assert (query_y[t] == label).sum() == queries
            # No example twice, support and query disjoint.
            every = np.concatenate([support[t], query[t]])
            assert len(set(every)) == len(every)


def test_same_seed_same_episodes_other_seed_different():
    images, labels = identity_images()

    def first_batches(seed):
        dataset = keras_meta.data.episodes_from_arrays(
            images, labels, 5, 1, 2, meta_batch=4, seed=seed
        )
        return [
            np.concatenate([a.ravel() for a in drawn(e)])
            for e in dataset.take(3)
        ]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))
    # Consecutive meta-batches differ too.
    assert not np.array_equal(a[0], a[1])


def test_labels_are_a_random_permutation_of_classes():
    images, labels = identity_images(classes=5)
    dataset = keras_meta.data.episodes_from_arrays(
        images, labels, 5, 1, 1, meta_batch=40, seed=0
    )
    support, support_y, _, _ = drawn(next(iter(dataset)))
    class_of_label_0 = labels[support[support_y == 0]]
    assert len(set(class_of_label_0)) > 1  # label 0 names varying classes


def test_sinusoid_tasks_follow_the_paper():
    dataset = keras_meta.data.sinusoid(
        shots=10, queries=7, meta_batch=50, seed=0
    )
    x, y = next(iter(dataset))
    xs, ys = x["support_x"].numpy(), x["support_y"].numpy()
    xq, yq = x["query_x"].numpy(), y.numpy()
    assert xs.shape == (50, 10, 1) and yq.shape == (50, 7, 1)
    assert xs.min() >= -5 and xs.max() <= 5
    for t in range(50):
        # Recover amplitude and phase from the support set by least squares:
        # A sin(x - p) = a sin x + b cos x with a = A cos p, b = -A sin p.
        design = np.concatenate([np.sin(xs[t]), np.cos(xs[t])], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, ys[t, :, 0], rcond=None)
        amplitude, phase = math.hypot(a, b), math.atan2(-b, a)
        assert 0.1 - 1e-4 <= amplitude <= 5 + 1e-4
        assert -1e-4 <= phase <= math.pi + 1e-4
        np.testing.assert_allclose(
            yq[t, :, 0], amplitude * np.sin(xq[t, :, 0] - phase), atol=1e-4
        )


def test_start_continues_a_stream_where_it_left_off():
    images, labels = identity_images()
    stream = keras_meta.data.episodes_from_arrays(
        images, labels, 4, 1, 2, meta_batch=3, seed=9
    )
    resumed = keras_meta.data.episodes_from_arrays(
        images, labels, 4, 1, 2, meta_batch=3, seed=9, start=5
    )
    expected = list(stream.take(7))[5:]
    for (xa, ya), (xb, yb) in zip(resumed.take(2), expected):
        np.testing.assert_array_equal(xa["query_x"], xb["query_x"])
        np.testing.assert_array_equal(ya, yb)
    sine = keras_meta.data.sinusoid(meta_batch=2, seed=1)
    sine_resumed = keras_meta.data.sinusoid(meta_batch=2, seed=1, start=3)
    np.testing.assert_array_equal(
        list(sine.take(4))[3][1], next(iter(sine_resumed))[1]
    )
