"""Omniglot through TFDS, from the prepared copy in ../shared/data/tfds."""

import shutil

import numpy as np
import pytest

import keras_meta
from keras_meta.data.omniglot import (
    load_arrays,
    maml_split_characters,
    omniglot_classes,
    rotate_quarters,
)

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tfds_dir():
    from conftest import shared_data_dir

    return str(shared_data_dir() / "tfds")


@pytest.fixture(scope="module")
def vinyals_dir():
    from conftest import shared_data_dir

    return shared_data_dir() / "omniglot" / "splits" / "vinyals"


def classes_of(tfds_dir, split, scheme="maml", split_file=None, rotations=True):
    _, labels, pairs = omniglot_classes(
        split, scheme, split_file, rotations, 28, tfds_dir, False
    )
    characters = np.unique(labels)
    return {(int(characters[row]), k) for row, k in pairs}


def test_images_are_scaled_inverted_and_resized(tfds_dir):
    images, labels, names = load_arrays("train+test", 28, tfds_dir, False)
    assert images.shape == (32460, 28, 28, 1)
    assert images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Strokes are 1 and the background 0: most pixels are background.
    assert np.median(images) == 0.0
    assert len(np.unique(labels)) == 1623 and len(names) == 1623
    assert np.all(np.bincount(labels) == 20)


@pytest.mark.parametrize(
    "scheme, sizes",
    [
        ("maml", {"train": 1100, "val": 100, "test": 423}),
        ("background", {"train": 964, "test": 659}),
    ],
)
def test_split_schemes_have_exact_class_counts_and_share_no_character(
    tfds_dir, scheme, sizes
):
    characters = {}
    for split, size in sizes.items():
        with_rotations = classes_of(tfds_dir, split, scheme)
        without = classes_of(tfds_dir, split, scheme, rotations=False)
        assert len(with_rotations) == 4 * size
        assert len(without) == size
        characters[split] = {c for c, _ in with_rotations}
    splits = list(characters)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not characters[a] & characters[b], (a, b)
    assert len(set().union(*characters.values())) == 1623


def test_vinyals_split_files(tfds_dir, vinyals_dir):
    characters = {}
    for split, lines in (("train", 4112), ("val", 688), ("test", 1692)):
        classes = classes_of(
            tfds_dir, split, split_file=vinyals_dir / f"{split}.txt"
        )
        assert len(classes) == lines
        characters[split] = {c for c, _ in classes}
    assert not characters["train"] & characters["val"]
    assert not characters["train"] & characters["test"]
    assert not characters["val"] & characters["test"]
    assert len(characters["test"]) == 423


def test_rotation_transform_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 4, 5, 5, 1)).astype("float32")
    turns = rng.integers(0, 4, (2, 3))
    rotated = rotate_quarters(images, turns).numpy()
    for t in range(2):
        for w in range(3):
            expected = np.rot90(images[t, w], turns[t, w], axes=(1, 2))
            np.testing.assert_array_equal(rotated[t, w], expected)


def test_episodes_hold_rotated_source_images(tfds_dir):
    images, labels, _ = load_arrays("train+test", 28, tfds_dir, False)
    source = {}
    for i, image in enumerate(images):
        for k in range(4):
            source.setdefault(np.rot90(image, k).tobytes(), (labels[i], k))
    dataset = keras_meta.data.omniglot(
        "train",
        ways=5,
        shots=2,
        queries=3,
        meta_batch=8,
        data_dir=tfds_dir,
        download=False,
        seed=4,
    )
    train_characters = set(maml_split_characters("train"))
    rotations_seen = set()
    for x, y in dataset.take(2):
        for t in range(8):
            for images_ in (x["support_x"][t], x["query_x"][t]):
                for image in images_.numpy():
                    character, k = source[image.tobytes()]
                    assert character in train_characters
                    rotations_seen.add(k)
            # One (character, rotation) per label, the same in both sets.
            found = {}
            for images_, labels_ in (
                (x["support_x"][t], x["support_y"][t]),
                (x["query_x"][t], y[t]),
            ):
                for image, label in zip(images_.numpy(), labels_.numpy()):
                    found.setdefault(int(label), set()).add(
                        source[image.tobytes()]
                    )
            assert sorted(found) == list(range(5))
            assert all(len(v) == 1 for v in found.values())
            assert len({next(iter(v)) for v in found.values()}) == 5
    assert rotations_seen == {0, 1, 2, 3}


def test_episode_shapes_and_seeds(tfds_dir):
    def first(seed):
        dataset = keras_meta.data.omniglot(
            "test",
            ways=20,
            shots=1,
            queries=5,
            meta_batch=2,
            data_dir=tfds_dir,
            download=False,
            seed=seed,
        )
        return next(iter(dataset))

    (x, y), (x2, _), (x3, _) = first(1), first(1), first(2)
    assert x["support_x"].shape == (2, 20, 28, 28, 1)
    assert x["query_x"].shape == (2, 100, 28, 28, 1)
    assert sorted(np.unique(y)) == list(range(20))
    np.testing.assert_array_equal(x["query_x"], x2["query_x"])
    assert not np.array_equal(x["query_x"], x3["query_x"])


def test_supervised_batches_cover_the_split_classes(tfds_dir):
    dataset = keras_meta.data.omniglot(
        "val",
        episodic=False,
        batch_size=500,
        data_dir=tfds_dir,
        download=False,
    )
    classes = np.concatenate([y.numpy() for _, y in dataset.take(16)])
    images, _ = next(iter(dataset))
    assert images.shape == (500, 28, 28, 1)
    # 100 characters x 4 rotations x 20 images = 8,000 = one pass.
    assert classes.min() == 0 and classes.max() == 399
    assert np.all(np.bincount(classes, minlength=400) == 20)


def test_bad_input(tfds_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        keras_meta.data.omniglot(
            "validation", data_dir=tfds_dir, download=False
        )
    with pytest.raises(ValueError, match="Unknown split 'val'.*background"):
        keras_meta.data.omniglot(
            "val", split_scheme="background", data_dir=tfds_dir, download=False
        )
    with pytest.raises(ValueError, match="Unknown split_scheme 'vinyals'"):
        keras_meta.data.omniglot(
            "train", split_scheme="vinyals", data_dir=tfds_dir, download=False
        )
    with pytest.raises(ValueError, match="ways=2000 is more than the 1692"):
        keras_meta.data.omniglot(
            "test", ways=2000, data_dir=tfds_dir, download=False
        )
    with pytest.raises(ValueError, match=r"10 \+ 15 = 25 images.*only 20"):
        keras_meta.data.omniglot(
            "test", shots=10, data_dir=tfds_dir, download=False
        )
    bad_file = tmp_path / "split.txt"
    bad_file.write_text("Angelic/character99/rot000\n")
    with pytest.raises(ValueError, match="names no Omniglot character"):
        keras_meta.data.omniglot(
            "train", split_file=bad_file, data_dir=tfds_dir, download=False
        )


def test_missing_and_corrupt_data_folders(tfds_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ValueError, match=f"No prepared TFDS.*omniglot.*{empty}"
    ):
        keras_meta.data.omniglot("train", data_dir=str(empty), download=False)
    with pytest.raises(ValueError, match="does not exist"):
        keras_meta.data.omniglot("train", data_dir=str(tmp_path / "none"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tfds_dir, corrupt)
    for record in corrupt.glob("omniglot/*/omniglot-small1.tfrecord*"):
        record.chmod(0o644)
        data = record.read_bytes()
        record.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        load_arrays("small1", 28, str(corrupt), False)
