"""Omniglot episodes through TensorFlow Datasets' own `omniglot` builder.

The 1623 handwritten characters of Lake et al. (TFDS's `label`), 20 images
each, are decoded once per process as grayscale, resized to `image_size`,
scaled to [0, 1] and inverted (strokes 1, background 0) as MAML's reference
code does, and kept in memory (about 100 MB at 28x28). Episodes are sampled
inside the `tf.data` graph with seeded stateless random ops.
"""

import functools
import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_meta.checks import check_count
from keras_meta.data.episodes import ClassIndex, Sampling
from keras_meta.data.images import tfds_builder
from keras_meta.data.preprocessing import omniglot as omniglot_preprocessing
from keras_meta.data.supervised import episodes_or_batches

NUM_CHARACTERS = 1623
MAML_SPLIT_SIZES = {"train": 1100, "val": 100, "test": 423}
MAML_SPLIT_SEED = 1
SPLIT_SCHEMES = ("maml", "background")
ROTATIONS = 4


@functools.lru_cache(maxsize=4)
def load_arrays(split, image_size=28, data_dir=None, download=True):
    """Decodes a TFDS split of Omniglot once per process.

    Args:
        split: a TFDS split expression (`"train"`, `"test"`, `"small1"`,
            `"train+test"`, ...).
        image_size: side of the square images.

    Returns:
        `(images float32 [M, size, size, 1] in [0, 1], strokes 1,
        labels int64 [M] (TFDS character ids), label_names list)`.
    """
    builder = tfds_builder("omniglot", data_dir, download)
    import tensorflow_datasets as tfds

    preprocessing = omniglot_preprocessing(image_size)

    def decode(example):
        return preprocessing.prepare(example["image"]), example["label"]

    try:
        ds = builder.as_dataset(
            split=split,
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(2048)
        images, labels = [], []
        for batch_images, batch_labels in ds:
            images.append(batch_images.numpy())
            labels.append(batch_labels.numpy())
    except (tf.errors.OpError, OSError) as e:
        raise ValueError(
            f"The prepared Omniglot copy at {builder.data_dir} could not be "
            f"read ({type(e).__name__}: {str(e).splitlines()[0]}): it is "
            "incomplete or corrupt. Delete it and prepare it again, or point "
            "data_dir at a good copy."
        ) from e
    names = builder.info.features["label"].names
    return np.concatenate(images), np.concatenate(labels), names


def maml_split_characters(split):
    """Character ids of MAML's split: all 1623 shuffled with a fixed seed,
    then 1100 meta-train, 100 meta-validation and 423 meta-test."""
    order = np.random.default_rng(MAML_SPLIT_SEED).permutation(NUM_CHARACTERS)
    start = 0
    for name, size in MAML_SPLIT_SIZES.items():
        if name == split:
            return np.sort(order[start : start + size])
        start += size
    raise ValueError(
        f"Unknown split {split!r} for split_scheme='maml'; use one of "
        f"{tuple(MAML_SPLIT_SIZES)}."
    )


def read_split_file(path, label_names):
    """Reads a class list such as Vinyals et al.'s split files.

    Each line is `Alphabet/characterNN[/rotDDD]`; returns `(character id,
    quarter turns)` pairs (a line without a rotation means 0 degrees).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"split_file {str(path)!r} does not exist.")
    ids = {name: i for i, name in enumerate(label_names)}
    classes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("/")
        try:
            alphabet, character = parts[0], parts[1]
            character_id = int(character[len("character") :]) - 1
            degrees = int(parts[2][len("rot") :]) if len(parts) > 2 else 0
        except (IndexError, ValueError) as e:
            raise ValueError(
                f"{path}:{number}: {line!r} is not of the form "
                "'Alphabet/characterNN/rotDDD'."
            ) from e
        name = f"{alphabet}_{character_id}"
        if name not in ids or degrees % 90 or not 0 <= degrees < 360:
            raise ValueError(
                f"{path}:{number}: {line!r} names no Omniglot character "
                "(or a rotation other than 0, 90, 180, 270)."
            )
        classes.append((ids[name], degrees // 90))
    if not classes:
        raise ValueError(f"split_file {str(path)!r} lists no classes.")
    return classes


def rotate_quarters(images, turns):
    """Rotates `images [T, W, P, s, s, C]` of each class by its quarter
    `turns [T, W]` (counter-clockwise, as `np.rot90`)."""
    size = images.shape[3]
    grid = np.arange(size * size).reshape(size, size)
    source = tf.constant(
        np.stack([np.rot90(grid, k).ravel() for k in range(ROTATIONS)])
    )
    shape = tf.shape(images)
    flat = tf.reshape(images, tf.concat([shape[:3], [size * size, -1]], 0))
    rotated = tf.gather(flat, tf.gather(source, turns), axis=3, batch_dims=2)
    return tf.reshape(rotated, shape)


def omniglot_classes(
    split, split_scheme, split_file, rotations, image_size, data_dir, download
):
    """Images, labels and the `(row, quarter turns)` classes of a split."""
    if split_file is None and split_scheme == "background":
        tfds_split = split if split in ("train", "test") else None
    else:
        tfds_split = "train+test"
    if split_file is None and split_scheme not in SPLIT_SCHEMES:
        raise ValueError(
            f"Unknown split_scheme {split_scheme!r}; use one of "
            f"{SPLIT_SCHEMES}, or give split_file=PATH."
        )
    if tfds_split is None:
        raise ValueError(
            f"Unknown split {split!r} for split_scheme='background', which "
            "has only 'train' (964 background characters) and 'test' (659 "
            "evaluation characters)."
        )
    if split_file is None and split_scheme == "maml":
        maml_split_characters(split)  # checks the split name before loading
    images, labels, names = load_arrays(
        tfds_split, image_size, data_dir, download
    )
    if split_file is not None:
        pairs = read_split_file(split_file, names)
    else:
        characters = (
            maml_split_characters(split)
            if split_scheme == "maml"
            else np.unique(labels)
        )
        turns = range(ROTATIONS) if rotations else (0,)
        pairs = [(c, k) for c in characters for k in turns]
    characters = np.unique([c for c, _ in pairs])
    keep = np.isin(labels, characters)
    images, labels = images[keep], labels[keep]
    row = {c: i for i, c in enumerate(np.unique(labels))}
    missing = sorted(set(characters) - set(row))
    if missing:
        raise ValueError(
            f"{len(missing)} characters of the split have no images in TFDS "
            f"split {tfds_split!r} (for example {names[missing[0]]})."
        )
    return images, labels, [(row[c], k) for c, k in pairs]


def omniglot(
    split="train",
    ways=5,
    shots=1,
    queries=15,
    meta_batch=32,
    image_size=28,
    rotations=True,
    split_scheme="maml",
    split_file=None,
    data_dir=None,
    seed=0,
    episodic=True,
    batch_size=None,
    download=True,
    start=0,
):
    """Omniglot as an endless `tf.data.Dataset` of few-shot meta-batches.

    Args:
        split: `"train"`, `"val"` or `"test"` (`"background"`: no `"val"`).
        ways, shots, queries, meta_batch: N, K, query images per class, T.
        image_size: side of the square images (28 as MAML and Reptile).
        rotations: each character at 0/90/180/270 degrees is its own class
            (Santoro et al., MAML).
        split_scheme: `"maml"` (all 1623 characters shuffled with a fixed
            seed: 1100 train / 100 val / 423 test) or `"background"`
            (TFDS's train: 964 background characters; test: 659).
        split_file: a class list such as `splits/vinyals/test.txt` (lines
            `Alphabet/characterNN/rotDDD`); overrides `split_scheme` and
            `rotations`.
        data_dir: TFDS data folder with a prepared `omniglot`
            (default: `$TFDS_DATA_DIR` or TFDS's own).
        seed: the same seed gives the same episodes.
        episodic: False gives ordinary `(image, class)` batches of
            `batch_size` over the split's classes (ids `0..C-1`), endless and
            shuffled, for the pre-training baseline.
        download: allow TFDS to download when no prepared copy is found.
        start: index of the first element (`start=n` continues a stream
            after n elements, to resume training).

    Returns:
        Episodes `({"support_x": [T, N*K, s, s, 1], "support_y": [T, N*K],
        "query_x": [T, N*Q, s, s, 1]}, query_y [T, N*Q])`, or with
        `episodic=False`, `(images [B, s, s, 1], classes [B])`.
    """
    sampling = Sampling(
        ways, shots, queries, meta_batch, seed, start, episodic, batch_size
    )
    image_size = check_count(image_size, "image_size", 4)
    if split_file is not None:
        split_file = os.fspath(split_file)
    images, labels, classes = omniglot_classes(
        split,
        split_scheme,
        split_file,
        rotations,
        image_size,
        data_dir,
        download,
    )
    scheme = split_file or f"split_scheme={split_scheme!r}"
    return episodes_or_batches(
        images,
        ClassIndex(labels, variants=classes),
        sampling,
        f"Omniglot split {split!r} ({scheme})",
        transform=rotate_quarters,
    )
