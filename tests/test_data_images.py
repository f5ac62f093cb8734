"""Episodes from image folders, any TFDS dataset, and Mini-ImageNet."""

import csv

import numpy as np
import pytest
from PIL import Image

import keras_meta

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration


def write_folder(root, classes=6, per_class=5, size=8):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
            images.append(pixels)
            labels.append(c)
    (root / "notes.txt").write_text("not a class")
    return np.stack(images), np.asarray(labels)


def test_from_directory_gives_the_episodes_of_the_same_arrays(tmp_path):
    images, labels = write_folder(tmp_path / "data")
    from_folder = keras_meta.data.from_directory(
        tmp_path / "data", ways=3, shots=1, queries=2, meta_batch=4, seed=5
    )
    from_arrays = keras_meta.data.episodes_from_arrays(
        images.astype(np.float32) / 255.0, labels, 3, 1, 2, 4, seed=5
    )
    for (xa, ya), (xb, yb) in zip(from_folder.take(2), from_arrays.take(2)):
        for key in xa:
            np.testing.assert_array_equal(xa[key], xb[key])
        np.testing.assert_array_equal(ya, yb)


def test_from_directory_resizes_selects_classes_and_batches(tmp_path):
    write_folder(tmp_path / "data")
    x, y = next(
        iter(
            keras_meta.data.from_directory(
                tmp_path / "data",
                ways=2,
                shots=2,
                queries=1,
                meta_batch=3,
                image_size=4,
                channels=1,
                classes=[0, 1],
            )
        )
    )
    assert x["support_x"].shape == (3, 4, 4, 4, 1)
    batches = keras_meta.data.from_directory(
        tmp_path / "data", episodic=False, batch_size=10, classes=[2, 4, 5]
    )
    classes = np.concatenate([b[1].numpy() for b in batches.take(3)])
    assert sorted(np.unique(classes)) == [0, 1, 2]


def test_from_directory_bad_input(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        keras_meta.data.from_directory(tmp_path / "nowhere")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class sub-folders with images"):
        keras_meta.data.from_directory(tmp_path / "empty")
    write_folder(tmp_path / "data")
    (tmp_path / "data" / "class_03" / "001.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="class_03/001.png"):
        keras_meta.data.from_directory(tmp_path / "data")
    write_folder(tmp_path / "ok")
    with pytest.raises(ValueError, match="ways=9 is more than the 6 classes"):
        keras_meta.data.from_directory(tmp_path / "ok", ways=9)
    (tmp_path / "ok" / "class_99").mkdir()
    with pytest.raises(ValueError, match="class_99' holds no image"):
        keras_meta.data.from_directory(tmp_path / "ok")


def test_no_download_is_tried_offline(tmp_path, monkeypatch):
    # A closed local port stands for a machine without internet: the
    # loader says so in seconds instead of retrying downloads for minutes.
    monkeypatch.setenv("KERAS_META_DOWNLOAD_PROBE", "127.0.0.1:9")
    (tmp_path / "tfds").mkdir()
    with pytest.raises(ValueError, match="cannot download it"):
        keras_meta.data.omniglot("train", data_dir=str(tmp_path / "tfds"))


@pytest.fixture(scope="module")
def tfds_dir():
    from conftest import shared_data_dir

    return str(shared_data_dir() / "tfds")


def test_from_tfds_reads_any_labelled_image_dataset(tfds_dir):
    dataset = keras_meta.data.from_tfds(
        "omniglot",
        split="small2",
        ways=4,
        shots=1,
        queries=3,
        meta_batch=2,
        image_size=28,
        data_dir=tfds_dir,
        download=False,
        seed=1,
    )
    x, y = next(iter(dataset))
    assert x["support_x"].shape == (2, 4, 28, 28, 3)
    assert x["support_x"].dtype == "float32"
    assert 0.0 <= float(np.min(x["query_x"])) <= float(np.max(x["query_x"]))
    assert float(np.max(x["query_x"])) <= 1.0
    assert sorted(np.unique(y)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no feature 'picture'"):
        keras_meta.data.from_tfds(
            "omniglot",
            split="small2",
            image_key="picture",
            data_dir=tfds_dir,
            download=False,
        )
    with pytest.raises(ValueError, match="Unknown split 'small3'"):
        keras_meta.data.from_tfds(
            "omniglot", split="small3", data_dir=tfds_dir, download=False
        )
    with pytest.raises(ValueError, match="knows no dataset"):
        keras_meta.data.from_tfds("no_such_dataset_anywhere")


# -- Mini-ImageNet on a tiny fake copy ------------------------------------


@pytest.fixture(scope="module")
def fake_mini_imagenet(tmp_path_factory):
    """A few classes of flat-colour JPEGs per split, with split CSVs in the
    format of the real ones (and class ids taken from them)."""
    from conftest import shared_data_dir

    real = shared_data_dir() / "miniimagenet" / "splits"
    manual = tmp_path_factory.mktemp("manual")
    (manual / "images").mkdir()
    colours = {}
    for split, count in (("train", 4), ("val", 3), ("test", 3)):
        with open(real / f"{split}.csv") as f:
            rows = list(csv.reader(f))
        header, rows = rows[0], rows[1:]
        wnids = sorted({label for _, label in rows})[:count]
        with open(manual / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for wnid in wnids:
                colours[wnid] = 20 * (len(colours) + 1)
                for i in range(5):
                    name = f"{wnid}{i + 1:08d}.jpg"
                    size = (84, 84) if i else (100, 90)  # one to resize
                    Image.new("RGB", size, (colours[wnid],) * 3).save(
                        manual / "images" / name
                    )
                    writer.writerow([name, wnid])
    return manual, colours


def test_mini_imagenet_builder_and_episodes(fake_mini_imagenet, tmp_path):
    manual, colours = fake_mini_imagenet
    seen = {}
    for split in ("train", "val", "test"):
        dataset = keras_meta.data.mini_imagenet(
            split,
            ways=3,
            shots=1,
            queries=2,
            meta_batch=2,
            data_dir=str(tmp_path / "tfds"),
            manual_dir=manual,
        )
        x, y = next(iter(dataset))
        assert x["support_x"].shape == (2, 3, 84, 84, 3)
        assert x["query_x"].shape == (2, 6, 84, 84, 3)
        for t in range(2):
            support = np.round(
                x["support_x"][t].numpy().mean(axis=(1, 2, 3)) * 255
            )
            query = np.round(x["query_x"][t].numpy().mean(axis=(1, 2, 3)) * 255)
            for label in range(3):
                shades = set(support[x["support_y"][t].numpy() == label])
                shades |= set(query[y[t].numpy() == label])
                assert len(shades) == 1  # one class per label
                seen.setdefault(split, set()).update(shades)
    expected = {v for v in colours.values()}
    assert set().union(*seen.values()) <= expected
    assert len(seen["train"]) == 4
    assert not seen["train"] & seen["val"] and not seen["val"] & seen["test"]

    import tensorflow_datasets as tfds

    builder = tfds.builder("mini_imagenet", data_dir=str(tmp_path / "tfds"))
    assert builder.info.splits["train"].num_examples == 20
    assert builder.info.features["label"].num_classes == 10


def test_mini_imagenet_without_manual_files_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="train.csv"):
        keras_meta.data.mini_imagenet(
            "train",
            data_dir=str(tmp_path / "tfds"),
            manual_dir=tmp_path / "manual",
        )
    with pytest.raises(ValueError, match="Unknown Mini-ImageNet split"):
        keras_meta.data.mini_imagenet("validation")
