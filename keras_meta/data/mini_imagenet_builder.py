"""TFDS builder `mini_imagenet`: Ravi & Larochelle's Mini-ImageNet split.

Importing this module registers the builder, so that
`tfds.builder("mini_imagenet")` and `tfds.load("mini_imagenet")` work. The
images cannot be downloaded automatically: see `MANUAL_DOWNLOAD_INSTRUCTIONS`.
"""

import csv

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 84
SPLITS = ("train", "val", "test")


def read_split_csv(path):
    """Rows `(filename, label)` of a split file with header
    `filename,label`."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["filename", "label"]:
            raise ValueError(
                f"{path} must start with the header 'filename,label' (Ravi "
                f"& Larochelle's split files); got {header}."
            )
        rows = [tuple(row) for row in reader if row]
    if any(len(row) != 2 for row in rows):
        raise ValueError(f"{path} has rows that are not 'filename,label'.")
    return rows


class MiniImagenet(tfds.core.GeneratorBasedBuilder):
    """Mini-ImageNet (Vinyals et al. 2016) with Ravi & Larochelle's split:
    64 train, 16 validation and 20 test classes of 600 84x84 RGB images."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Ravi & Larochelle's 64/16/20 class split."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Mini-ImageNet cannot be downloaded automatically. Put in the manual folder
(`manual_dir=`, or TFDS's default `<data_dir>/downloads/manual/`):

  train.csv, val.csv, test.csv   Ravi & Larochelle's split files, lines
                                 `filename,label` under that header
  images/                        the 60,000 images named in them, for example
                                 images/n0153282900000005.jpg (84x84 RGB;
                                 other sizes are resized to 84x84)

The images and CSVs are distributed with Ravi & Larochelle's "Optimization
as a Model for Few-Shot Learning" code; the images come from ImageNet, under
its terms of access.
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(
                        shape=(IMAGE_SIZE, IMAGE_SIZE, 3)
                    ),
                    # Names (the WordNet ids of all splits) are set when the
                    # split files are read.
                    "label": tfds.features.ClassLabel(),
                    "filename": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/twitter-research/meta-learning-lstm",
        )

    def _split_generators(self, dl_manager):
        manual = dl_manager.manual_dir
        rows = {}
        for split in SPLITS:
            path = manual / f"{split}.csv"
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
                )
            rows[split] = read_split_csv(path)
        names = []
        for split in SPLITS:
            names += sorted({label for _, label in rows[split]} - set(names))
        self.info.features["label"].names = names
        image_dir = manual / "images"
        if not image_dir.exists():
            image_dir = manual
        return {
            split: self._generate_examples(rows[split], image_dir)
            for split in SPLITS
        }

    def _generate_examples(self, rows, image_dir):
        from PIL import Image

        for filename, label in rows:
            path = image_dir / filename
            if not path.exists():
                raise FileNotFoundError(
                    f"Image {path} named in the split files is missing."
                )
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    image = image.resize(
                        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS
                    )
                pixels = np.asarray(image, dtype=np.uint8)
            yield (
                filename,
                {
                    "image": pixels,
                    "label": label,
                    "filename": filename,
                },
            )
