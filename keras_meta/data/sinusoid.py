"""The sinusoid regression tasks of the MAML paper (Finn et al. 2017, 5.1)."""

import math

import tensorflow as tf

from keras_meta.checks import check_count
from keras_meta.data.episodes import (
    as_episode,
    batch_seeds,
    for_distribution,
)


def sinusoid(
    shots=10,
    queries=10,
    meta_batch=25,
    seed=0,
    amplitude_range=(0.1, 5.0),
    phase_range=(0.0, math.pi),
    input_range=(-5.0, 5.0),
    start=0,
):
    """An endless dataset of sinusoid regression meta-batches.

    Each task is `y = A * sin(x - phase)` with `A` uniform in
    `amplitude_range`, `phase` uniform in `phase_range` and the inputs `x`
    uniform in `input_range` (the paper: [0.1, 5], [0, pi], [-5, 5]).
    `start=n` begins at the stream's element n (to resume training).

    Returns:
        A `tf.data.Dataset` of `(x, y)` with `x = {"support_x": [T, K, 1],
        "support_y": [T, K, 1], "query_x": [T, Q, 1]}`, `y = [T, Q, 1]`,
        float32; K = `shots`, Q = `queries`, T = `meta_batch`.
    """
    shots = check_count(shots, "shots", 1)
    queries = check_count(queries, "queries", 1)
    meta_batch = check_count(meta_batch, "meta_batch", 1)
    for name, (low, high) in (
        ("amplitude_range", amplitude_range),
        ("phase_range", phase_range),
        ("input_range", input_range),
    ):
        if not low <= high:
            raise ValueError(f"{name} must be (low, high), got {(low, high)}.")

    def meta_batch_at(i):
        seed_amplitude, seed_phase, seed_x = batch_seeds(seed, i, 3)
        amplitude = tf.random.stateless_uniform(
            [meta_batch, 1, 1], seed_amplitude, *amplitude_range
        )
        phase = tf.random.stateless_uniform(
            [meta_batch, 1, 1], seed_phase, *phase_range
        )
        x = tf.random.stateless_uniform(
            [meta_batch, shots + queries, 1], seed_x, *input_range
        )
        y = amplitude * tf.sin(x - phase)
        return as_episode(
            x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:]
        )

    return for_distribution(
        tf.data.Dataset.counter(start=int(start))
        .map(meta_batch_at)
        .prefetch(tf.data.AUTOTUNE)
    )
