"""Episode streams of a run's splits, from its `RunConfig` (no flags here,
so that compare and analyze can use it beside their own)."""

import os

EVAL_META_BATCH = 20
# The meta-test tasks' seed, whatever the run's: every run of one setting
# and protocol is tested on the same tasks, in the same order, so that two
# runs (two methods, or two training seeds) pair up task by task. (Runs
# with --seed=0 have always drawn them with 2.)
TEST_SEED = 2


class UnknownDataset(ValueError):
    """The dataset named is none the scripts know."""


def class_partition(num_classes, split):
    """Class ids of a 64/16/20 % train/val/test partition (CIFAR-FS's)."""
    train = round(0.64 * num_classes)
    val = round(0.16 * num_classes)
    bounds = {
        "train": (0, train),
        "val": (train, train + val),
        "test": (train + val, num_classes),
    }
    return list(range(*bounds[split]))


def test_data(config, protocol):
    """The meta-test episodes of `protocol`: its queries per class, drawn
    with `TEST_SEED`."""
    return make_data(
        config,
        "test",
        queries=protocol.queries_per_class(config.shots),
    )


def make_data(config, split, episodic=True, start=0, queries=None):
    """Episodes of a split (`train`/`val`/`test`), or plain batches.

    Training draws `config.queries` query examples per class, validation
    `config.eval_queries`, and the test `queries` (see `test_data`)."""
    import keras_meta

    training = split == "train"
    if queries is None:
        queries = config.queries if training else config.eval_queries
    common = dict(
        ways=(config.train_ways or config.ways) if training else config.ways,
        shots=(config.train_shots or config.shots)
        if training
        else config.shots,
        queries=queries,
        meta_batch=config.meta_batch if training else EVAL_META_BATCH,
        seed=TEST_SEED
        if split == "test"
        else config.seed + {"train": 0, "val": 1}[split],
        start=start,
    )
    if config.dataset == "sinusoid":
        common.pop("ways")
        return keras_meta.data.sinusoid(**common)
    common.update(episodic=episodic, batch_size=config.batch_size)
    if config.dataset == "omniglot":
        return keras_meta.data.omniglot(
            split,
            data_dir=config.data_dir,
            image_size=config.image_size or 28,
            **common,
        )
    if config.dataset == "mini_imagenet":
        return keras_meta.data.mini_imagenet(
            split,
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
            image_size=config.image_size,
            **common,
        )
    return other_images(config, split, common)


def preprocessing(config):
    """How the run's images are prepared (`ImagePreprocessing`), recorded
    with its SavedModel for `keras-meta predict`; None for regression."""
    from keras_meta.data import preprocessing as prep

    if config.dataset == "sinusoid":
        return None
    if config.dataset == "omniglot":
        return prep.omniglot(config.image_size or 28)
    if config.dataset == "mini_imagenet":
        return prep.ImagePreprocessing(config.image_size or 84, 3)
    if os.path.isdir(config.dataset):
        return prep.ImagePreprocessing(config.image_size, config.channels)
    from keras_meta.data.images import tfds_builder

    image = tfds_builder(config.dataset, config.data_dir).info.features["image"]
    return prep.ImagePreprocessing(config.image_size, image.shape[-1])


def other_images(config, split, common):
    """A folder of class folders or a TFDS dataset, its classes split
    64/16/20 % into train/val/test."""
    import keras_meta
    from keras_meta.data.images import list_directory, tfds_builder

    if os.path.isdir(config.dataset):
        _, _, names = list_directory(config.dataset)
        return keras_meta.data.from_directory(
            config.dataset,
            classes=class_partition(len(names), split),
            image_size=config.image_size,
            channels=config.channels,
            **common,
        )
    try:
        builder = tfds_builder(config.dataset, config.data_dir)
    except ValueError as e:
        raise UnknownDataset(
            f"Unknown dataset {config.dataset!r}: not omniglot, "
            f"mini_imagenet, sinusoid, a folder, or a TFDS dataset ({e})"
        ) from e
    num_classes = builder.info.features["label"].num_classes
    return keras_meta.data.from_tfds(
        config.dataset,
        split="train",
        data_dir=config.data_dir,
        image_size=config.image_size,
        classes=class_partition(num_classes, split),
        **common,
    )
