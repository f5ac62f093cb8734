"""Ordinary `(example, class)` batches over the classes of an episode split,
for the pre-training baseline."""

import numpy as np
import tensorflow as tf

from keras_meta.data.episodes import episodes_from_index, for_distribution


def supervised_batches(
    images, index, batch_size, seed, transform=None, start=0
):
    """An endless, shuffled dataset of `(images [B, ...], classes [B])`.

    Every (virtual) class of `index` gets a class id `0..C-1`, in the order
    of `index`; each of its base class's examples appears once per pass.
    `transform(images [B, 1, 1, ...], variants [B, 1])` maps the examples of
    class variants, as for episodes. `start=n` skips the first n batches
    (cheaply: before any image is gathered). The dataset's `num_classes`
    attribute is C.
    """
    positions, class_ids, variants = [], [], []
    for class_id, (row, variant) in enumerate(
        zip(index.virtual_rows, index.virtual_variants)
    ):
        examples = index.table[row, : index.counts[row]]
        positions.append(examples)
        class_ids.append(np.full(len(examples), class_id, np.int32))
        variants.append(np.full(len(examples), variant, np.int32))
    pairs = tf.data.Dataset.from_tensor_slices(
        tuple(np.concatenate(a) for a in (positions, class_ids, variants))
    )

    def gather(position, class_id, variant):
        batch = tf.gather(images, position)
        if transform is not None:
            batch = transform(batch[:, None, None], variant[:, None])[:, 0, 0]
        return batch, class_id

    dataset = (
        pairs.shuffle(
            len(np.concatenate(positions)),
            seed=seed,
            reshuffle_each_iteration=True,
        )
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .skip(int(start))
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    dataset = for_distribution(dataset)
    dataset.num_classes = index.num_classes
    return dataset


def episodes_or_batches(images, index, sampling, what, transform=None):
    """What every loader returns: the episode stream over `images` grouped
    by `index` (checked against N, K and Q, naming `what` in errors), or
    with `sampling.episodic` False the supervised batches of
    `sampling.batch_size`."""
    images = tf.constant(images)
    if not sampling.episodic:
        return supervised_batches(
            images,
            index,
            sampling.batch_size,
            sampling.seed,
            transform=transform,
            start=sampling.start,
        )
    index.check(sampling.ways, sampling.shots, sampling.queries, what=what)
    return episodes_from_index(images, index, sampling, transform=transform)
