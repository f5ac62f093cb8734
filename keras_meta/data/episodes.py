"""N-way K-shot episodes sampled inside the `tf.data` graph.

An episode dataset is endless: element `i` is a meta-batch of T tasks drawn
with stateless random ops seeded by `(seed, i)`, so the same seed always gives
the same stream (and a stream can be resumed at any position), whatever the
number of parallel calls.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_meta.checks import check_count


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How a stream draws from its examples, checked once by each loader.

    Episodes of `ways` classes, `shots` support and `queries` query examples
    per class, `meta_batch` tasks per element; or with `episodic=False`,
    plain `(example, class)` batches of `batch_size`. `seed` fixes the
    stream and `start=n` begins it at element n (to resume training).
    """

    ways: int
    shots: int
    queries: int
    meta_batch: int
    seed: int = 0
    start: int = 0
    episodic: bool = True
    batch_size: int | None = None

    def __post_init__(self):
        for name in ("ways", "shots", "queries", "meta_batch"):
            check_count(getattr(self, name), name, minimum=1)
        check_count(self.start, "start")
        if not self.episodic:
            check_count(self.batch_size or 0, "batch_size", minimum=1)

    @property
    def per_class(self):
        return self.shots + self.queries


def batch_seeds(seed, index, count):
    """`count` independent stateless seeds `[2]` for element `index`."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.unstack(
        tf.random.experimental.stateless_split(base, num=count), axis=0
    )


def for_distribution(dataset):
    """Shards a meta-batch stream by data under `tf.distribute`: each global
    meta-batch is split into per-replica groups of tasks, and each worker
    of a multi-worker run takes its own groups, so that the replicas of all
    workers together see exactly the tasks a single device would."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def as_episode(support_x, support_y, query_x, query_y):
    """The Keras `(x, y)` form of a meta-batch."""
    return (
        {"support_x": support_x, "support_y": support_y, "query_x": query_x},
        query_y,
    )


class ClassIndex:
    """Examples grouped by class, for sampling without replacement.

    `table[b, j]` is the position (in the original arrays) of the j-th example
    of base class b, for `j < counts[b]`; the rest of each row is padding.

    The classes that episodes draw from are *virtual* classes, pairs
    `(base class row, variant)`: by default one per base class (variant 0),
    but a base class can stand for several, for example Omniglot's rotated
    copies (variant k = rotation by k * 90 degrees).
    """

    def __init__(self, labels, variants=None):
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(
                f"labels must be 1-D [examples], got shape {labels.shape}."
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(
                f"labels must be integer class ids, got dtype {labels.dtype}."
            )
        self.classes, inverse, self.counts = np.unique(
            labels, return_inverse=True, return_counts=True
        )
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        width = int(self.counts.max()) if labels.size else 0
        self.table = np.zeros((len(self.classes), width), np.int64)
        for c, (start, count) in enumerate(zip(starts, self.counts)):
            self.table[c, :count] = order[start : start + count]
        if variants is None:
            variants = np.zeros(len(self.classes), np.int32)
            rows = np.arange(len(self.classes))
        else:
            rows, variants = (np.asarray(a) for a in zip(*variants))
        self.virtual_rows = np.asarray(rows, np.int64)
        self.virtual_variants = np.asarray(variants, np.int32)

    @property
    def num_classes(self):
        """How many (virtual) classes episodes draw from."""
        return len(self.virtual_rows)

    def check(self, ways, shots, queries, what="the data"):
        """Raises `ValueError` unless every task can be drawn."""
        if ways > self.num_classes:
            raise ValueError(
                f"ways={ways} is more than the {self.num_classes} classes of "
                f"{what}; use ways <= {self.num_classes} or more classes."
            )
        need = shots + queries
        smallest = int(np.argmin(self.counts))
        if self.counts[smallest] < need:
            name = self.classes[smallest].tolist()
            raise ValueError(
                f"shots + queries = {shots} + {queries} = {need} images per "
                f"class, but class {name!r} of {what} has "
                f"only {self.counts[smallest]}; lower shots or queries to a "
                f"total of at most {self.counts.min()}, or drop the classes "
                "with fewer images."
            )

    def sample(self, seed_classes, seed_examples, tasks, ways, per_class):
        """Draws `tasks` episodes in the graph.

        Each has `ways` distinct classes (in random order, so that label j
        names a random class) and `per_class` distinct examples of each.

        Returns:
            `(positions [tasks, ways, per_class], variants [tasks, ways])`.
        """
        width = self.table.shape[1]
        class_scores = tf.random.stateless_uniform(
            [tasks, self.num_classes], seed=seed_classes
        )
        chosen = tf.math.top_k(class_scores, k=ways).indices
        rows = tf.gather(tf.constant(self.virtual_rows), chosen)
        variants = tf.gather(tf.constant(self.virtual_variants), chosen)
        counts = tf.gather(tf.constant(self.counts, tf.int32), rows)
        example_scores = tf.random.stateless_uniform(
            [tasks, ways, width], seed=seed_examples
        )
        valid = tf.range(width)[None, None, :] < counts[..., None]
        example_scores = tf.where(valid, example_scores, -1.0)
        slots = tf.math.top_k(example_scores, k=per_class).indices
        positions = tf.gather(
            tf.gather(tf.constant(self.table), rows), slots, batch_dims=2
        )
        return positions, variants


def episodes_from_arrays(
    images,
    labels,
    ways,
    shots,
    queries,
    meta_batch,
    seed=0,
    start=0,
):
    """An endless dataset of N-way K-shot meta-batches from in-memory arrays.

    Each task draws `ways` distinct classes without replacement, remaps them
    to labels `0..ways-1` in a random order, and draws `shots + queries`
    distinct examples of each class: the first `shots` form the support set,
    the rest the query set, so support and query never share an example.

    Args:
        images: array `[examples, ...]` (any dtype; kept as given).
        labels: integer array `[examples]`, any class ids, any number of
            classes (at least `ways`), each with `shots + queries` examples
            or more.
        ways, shots, queries: N, K and the query examples per class.
        meta_batch: T, tasks per element.
        seed: int; the same seed gives the same episodes.
        start: index of the first meta-batch: `start=n` continues a stream
            after its first n elements (to resume training).

    Returns:
        A `tf.data.Dataset` of `(x, y)`: `x = {"support_x": [T, N*K, ...],
        "support_y": [T, N*K], "query_x": [T, N*Q, ...]}`, `y = [T, N*Q]`
        (labels int32, examples ordered class by class).
    """
    sampling = Sampling(ways, shots, queries, meta_batch, seed, start)
    images = np.asarray(images)
    if len(images) != len(np.asarray(labels)):
        raise ValueError(
            f"images and labels differ in length: {len(images)} images, "
            f"{len(np.asarray(labels))} labels."
        )
    index = ClassIndex(labels)
    index.check(ways, shots, queries)
    return episodes_from_index(tf.constant(images), index, sampling)


def episodes_from_index(images, index, sampling, transform=None):
    """The episode stream over a tensor of `images` grouped by `index`,
    drawn as `sampling` (a `Sampling`) says.

    `transform(images, variants)`, if given, maps the gathered images
    `[T, ways, shots + queries, ...]` of each class variant `[T, ways]` (for
    example, rotates Omniglot's rotated classes).
    """
    ways, shots, meta_batch = sampling.ways, sampling.shots, sampling.meta_batch
    per_class, seed = sampling.per_class, sampling.seed

    def meta_batch_at(i):
        seed_classes, seed_examples = batch_seeds(seed, i, 2)
        positions, variants = index.sample(
            seed_classes, seed_examples, meta_batch, ways, per_class
        )
        batch = tf.gather(images, positions)
        if transform is not None:
            batch = transform(batch, variants)
        labels = tf.broadcast_to(
            tf.range(ways, dtype=tf.int32)[None, :, None],
            [meta_batch, ways, per_class],
        )

        def flat(part):
            return tf.reshape(part, [meta_batch, -1] + part.shape[3:].as_list())

        return as_episode(
            flat(batch[:, :, :shots]),
            tf.reshape(labels[:, :, :shots], [meta_batch, -1]),
            flat(batch[:, :, shots:]),
            tf.reshape(labels[:, :, shots:], [meta_batch, -1]),
        )

    return for_distribution(
        tf.data.Dataset.counter(start=sampling.start)
        .map(
            meta_batch_at,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
