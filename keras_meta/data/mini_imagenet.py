"""Mini-ImageNet episodes over the package's TFDS builder `mini_imagenet`."""

from keras_meta.data.episodes import Sampling
from keras_meta.data.images import (
    image_episodes,
    load_tfds_images,
    tfds_builder,
)

SPLITS = ("train", "val", "test")


def mini_imagenet(
    split="train",
    ways=5,
    shots=1,
    queries=15,
    meta_batch=4,
    image_size=None,
    data_dir=None,
    manual_dir=None,
    download=True,
    seed=0,
    episodic=True,
    batch_size=None,
    start=0,
):
    """Mini-ImageNet (Ravi & Larochelle's 64/16/20 split) as episodes.

    The first call prepares the TFDS dataset from the images and split CSVs
    in `manual_dir` (see `MiniImagenet.MANUAL_DOWNLOAD_INSTRUCTIONS`); later
    calls read the prepared copy under `data_dir`. The split's images are
    kept in memory as uint8 (about 800 MB for the 38,400 training images).

    Args:
        split: `"train"`, `"val"` or `"test"`.
        image_size: resize the 84x84 images (default: keep 84).
        Others: as `keras_meta.data.omniglot`.

    Returns:
        Episodes `({"support_x": [T, N*K, 84, 84, 3], ...}, query_y)`,
        float32 in [0, 1], or `(images, classes)` batches with
        `episodic=False` (class ids `0..C-1` over the split).
    """
    if split not in SPLITS:
        raise ValueError(
            f"Unknown Mini-ImageNet split {split!r}; use one of {SPLITS}."
        )
    from keras_meta.data import mini_imagenet_builder  # noqa: F401 registers

    sampling = Sampling(
        ways, shots, queries, meta_batch, seed, start, episodic, batch_size
    )
    builder = tfds_builder("mini_imagenet", data_dir, download, manual_dir)
    images, labels = load_tfds_images(
        builder, split, image_size, "image", "label"
    )
    return image_episodes(
        images, labels, sampling, f"Mini-ImageNet split {split!r}"
    )
