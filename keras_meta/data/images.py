"""Few-shot episodes from any labelled image collection.

`from_tfds` reads any TFDS image-classification dataset with a label feature
(`cifar100` gives a CIFAR-FS-style benchmark), `from_directory` a folder of
class sub-folders (the layout `keras.utils.image_dataset_from_directory`
reads). Both decode the images once, keep them in memory as uint8 and give
the same episodes as `episodes_from_arrays` on the same images, scaled to
[0, 1] float32.
"""

import os
import pathlib

import numpy as np
import tensorflow as tf

from keras_meta.data.episodes import ClassIndex, Sampling
from keras_meta.data.preprocessing import ImagePreprocessing, resize_uint8
from keras_meta.data.supervised import episodes_or_batches

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def to_unit_float(images, variants):
    """uint8 images to float32 in [0, 1] (an episode transform)."""
    del variants
    return tf.cast(images, tf.float32) / 255.0


def image_episodes(images, labels, sampling, what, classes=None):
    """Episodes (or supervised batches) over uint8 `images` `[M, h, w, c]`,
    drawn as `sampling` says; `classes` selects the label ids to draw from
    (default: all). Images are scaled to [0, 1] float32."""
    if classes is not None:
        classes = np.asarray(list(classes))
        unknown = np.setdiff1d(classes, labels)
        if unknown.size:
            raise ValueError(
                f"classes {unknown.tolist()[:10]} have no images in {what}."
            )
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
    return episodes_or_batches(
        images, ClassIndex(labels), sampling, what, transform=to_unit_float
    )


def load_tfds_images(builder, split, image_size, image_key, label_key):
    """Decodes a TFDS split into `(uint8 images [M, ...], labels [M])`."""
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise ValueError(
                f"TFDS dataset {builder.name!r} has no feature {key!r}; its "
                f"features are {sorted(features)}. Pass image_key= and "
                "label_key=."
            )

    def decode(example):
        return resize_uint8(example[image_key], image_size), example[label_key]

    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except (ValueError, KeyError) as e:
        raise ValueError(
            f"Unknown split {split!r} of TFDS dataset {builder.name!r}; it "
            f"has {sorted(builder.info.splits)}."
        ) from e
    images, labels = [], []
    try:
        for batch_images, batch_labels in ds.map(
            decode, num_parallel_calls=tf.data.AUTOTUNE
        ).batch(1024):
            images.append(batch_images.numpy())
            labels.append(batch_labels.numpy())
    except tf.errors.OpError as e:
        raise ValueError(
            f"The prepared copy of {builder.name!r} at {builder.data_dir} "
            f"could not be read ({type(e).__name__}): it is incomplete or "
            "corrupt. Delete it and prepare it again."
        ) from e
    if not images:
        raise ValueError(f"Split {split!r} of {builder.name!r} is empty.")
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


# Where `cannot_download` knocks before TFDS starts a download (TFDS's own
# mirror); `KERAS_META_DOWNLOAD_PROBE=host:port` points it elsewhere.
DOWNLOAD_PROBE = ("storage.googleapis.com", 443)


def cannot_download(timeout=5.0):
    """Why a download cannot start (no route to the internet), or None.

    TFDS retries a failing download for minutes; one connection attempt
    tells in seconds."""
    import socket

    probe = os.environ.get("KERAS_META_DOWNLOAD_PROBE")
    host, port = probe.rsplit(":", 1) if probe else DOWNLOAD_PROBE
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        return f"connecting to {host}:{port} failed: {e}"
    return None


def tfds_builder(name, data_dir=None, download=True, manual_dir=None):
    """A prepared TFDS builder, or a `ValueError` that says how to get one.

    Uses the copy under `data_dir` (or `$TFDS_DATA_DIR`, or TFDS's default
    folder) when it is there; otherwise downloads and prepares it if
    `download` (from `manual_dir` for manual datasets), as `tfds.load`
    does. A `data_dir` that does not exist is refused at once, rather than
    after minutes of download retries on a machine without internet.
    """
    import tensorflow_datasets as tfds

    if data_dir is not None and manual_dir is None:
        if not os.path.isdir(data_dir):
            raise ValueError(
                f"The data folder {os.fspath(data_dir)!r} does not exist. "
                f"Point data_dir at a TFDS data folder that holds {name!r}, "
                "or create the folder first to have TFDS download into it."
            )

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"TFDS knows no dataset {name!r}; see `tfds.list_builders()`."
        ) from e
    if builder.is_prepared():
        return builder
    if not download and manual_dir is None:
        raise ValueError(
            f"No prepared TFDS dataset {name!r} was found at "
            f"{builder.data_dir}. Pass data_dir= (or set TFDS_DATA_DIR to) a "
            "folder that holds it, or allow the download (download=True)."
        )
    if manual_dir is None:
        offline = cannot_download()
        if offline:
            raise ValueError(
                f"No prepared TFDS dataset {name!r} was found at "
                f"{builder.data_dir}, and this machine cannot download it "
                f"({offline}). Pass data_dir= (or set TFDS_DATA_DIR to) a "
                "folder that holds a prepared copy, or connect to the "
                "internet."
            )
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=None if manual_dir is None else os.fspath(manual_dir)
            )
        )
    except Exception as e:  # network, disk, manual-data errors alike
        instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
        raise ValueError(
            f"TFDS dataset {name!r} is not prepared at {builder.data_dir} "
            f"and preparing it failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})."
            + (f"\n{instructions}" if instructions else "")
        ) from e
    return builder


def from_tfds(
    name,
    split="train",
    ways=5,
    shots=1,
    queries=15,
    meta_batch=4,
    image_size=None,
    classes=None,
    image_key="image",
    label_key="label",
    data_dir=None,
    download=True,
    seed=0,
    episodic=True,
    batch_size=None,
    start=0,
):
    """Episodes from any TFDS image-classification dataset.

    Args:
        name: TFDS name, for example `"cifar100"`.
        split: TFDS split (expression) whose images to use.
        classes: the label ids to draw from (default all), to build class
            splits such as CIFAR-FS's 64/16/20.
        image_size: resize to a square of this side (default: as stored).
        Others: as `keras_meta.data.omniglot`.
    """
    sampling = Sampling(
        ways, shots, queries, meta_batch, seed, start, episodic, batch_size
    )
    builder = tfds_builder(name, data_dir, download)
    images, labels = load_tfds_images(
        builder, split, image_size, image_key, label_key
    )
    return image_episodes(
        images, labels, sampling, f"TFDS {name!r} split {split!r}", classes
    )


def list_directory(path):
    """`(file paths, labels, class names)` of a folder of class folders,
    classes and files in sorted order."""
    root = pathlib.Path(path)
    if not root.is_dir():
        raise ValueError(
            f"Image folder {str(root)!r} does not exist or is not a folder."
        )
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels, empty = [], [], []
    for label, class_name in enumerate(class_names):
        images = [
            str(file)
            for file in sorted((root / class_name).iterdir())
            if file.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not images:
            empty.append(str(root / class_name))
        files += images
        labels += [label] * len(images)
    if not files:
        raise ValueError(
            f"Image folder {str(root)!r} holds no class sub-folders with "
            f"images ({', '.join(IMAGE_EXTENSIONS)}); expected "
            "PATH/<class name>/<image file>."
        )
    if empty:
        raise ValueError(
            f"Class folder {empty[0]!r} holds no image "
            f"({', '.join(IMAGE_EXTENSIONS)}): add its images or remove the "
            "folder."
            + (f" ({len(empty) - 1} more are empty.)" if len(empty) > 1 else "")
        )
    return files, np.asarray(labels, np.int64), class_names


def load_directory_images(path, image_size=None, channels=3):
    """Decodes a folder of class folders into `(uint8 images, labels,
    class names)`; all images must share a size unless `image_size`."""
    files, labels, class_names = list_directory(path)

    preprocessing = ImagePreprocessing(image_size, channels)

    def decode(file):
        return preprocessing.decode_uint8(tf.io.read_file(file))

    ds = tf.data.Dataset.from_tensor_slices(files).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE
    )
    images = []
    try:
        for image in ds:
            images.append(image.numpy())
    except tf.errors.OpError as e:
        bad = files[len(images)] if len(images) < len(files) else path
        raise ValueError(
            f"Cannot decode {bad!r} as an image ({type(e).__name__}); "
            "remove or replace the corrupt file."
        ) from e
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"The images under {str(path)!r} differ in size "
            f"({sorted(shapes)[:3]}...); pass image_size= to resize them."
        )
    return np.stack(images), labels, class_names


def from_directory(
    path,
    ways=5,
    shots=1,
    queries=15,
    meta_batch=4,
    image_size=None,
    channels=3,
    classes=None,
    seed=0,
    episodic=True,
    batch_size=None,
    start=0,
):
    """Episodes from a folder `path/<class name>/<image files>`.

    Classes are numbered in sorted order of their folder names, as
    `keras.utils.image_dataset_from_directory` does; `classes` selects a
    subset of those numbers. Images are decoded once with `channels`
    channels and resized to `image_size` if given.
    """
    sampling = Sampling(
        ways, shots, queries, meta_batch, seed, start, episodic, batch_size
    )
    images, labels, _ = load_directory_images(path, image_size, channels)
    return image_episodes(
        images, labels, sampling, f"image folder {os.fspath(path)!r}", classes
    )
