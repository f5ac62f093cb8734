"""How a model's images were prepared, so that new images are prepared the
same way: the loaders use it, the scripts record it with the exported
model, and `keras-meta predict` reads it back.
"""

import dataclasses

import numpy as np
import tensorflow as tf


def resize_uint8(image, size):
    """Resizes a uint8 image to `size` x `size` (area), as uint8."""
    if size is None:
        return image
    resized = tf.image.resize(image, [size, size], method="area")
    return tf.cast(tf.round(resized), tf.uint8)


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """Encoded image file -> float32 `[size, size, channels]` in [0, 1].

    Attributes:
        size: the square side images are resized to (area interpolation),
            or None to keep the decoded size.
        channels: 1 (grayscale) or 3 (RGB).
        invert: `1 - x` after scaling (Omniglot's strokes become 1, as in
            MAML's reference code).
        round_to_uint8: resize the decoded 0-255 pixels and round them back
            to integers before scaling (image folders and TFDS datasets,
            kept in memory as uint8), or scale first and resize the floats
            (Omniglot).
    """

    size: int | None
    channels: int = 3
    invert: bool = False
    round_to_uint8: bool = True

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}.")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1 or None, got {self.size}.")

    def decode_uint8(self, encoded):
        """An encoded image (a scalar string tensor) as uint8 `[h, w, c]`,
        resized if `size` (the in-memory form of folders and TFDS)."""
        image = tf.io.decode_image(
            encoded, channels=self.channels, expand_animations=False
        )
        return resize_uint8(image, self.size)

    def prepare(self, encoded):
        """An encoded image as the model takes it: float32 in [0, 1]."""
        if self.round_to_uint8:
            image = tf.cast(self.decode_uint8(encoded), tf.float32) / 255.0
        else:
            image = tf.io.decode_image(
                encoded, channels=self.channels, expand_animations=False
            )
            image = tf.cast(image, tf.float32) / 255.0
            if self.size is not None:
                image = tf.image.resize(
                    image, [self.size, self.size], method="area"
                )
        return 1.0 - image if self.invert else image

    def load(self, files):
        """Image files as one float32 array `[n, size, size, channels]`;
        a `ValueError` names a file that cannot be read or decoded, or
        images of different sizes when `size` is None."""
        images = []
        for file in files:
            try:
                images.append(self.prepare(tf.io.read_file(str(file))).numpy())
            except (tf.errors.OpError, OSError) as e:
                raise ValueError(
                    f"Cannot read {str(file)!r} as an image "
                    f"({type(e).__name__}): remove or replace the file."
                ) from e
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"The images differ in size ({sorted(shapes)[:3]}); the "
                "model was trained on images of one size."
            )
        return np.stack(images) if images else np.zeros((0,), np.float32)

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


def omniglot(size=28):
    """Omniglot's: grayscale, scaled, resized as floats, inverted."""
    return ImagePreprocessing(
        size, channels=1, invert=True, round_to_uint8=False
    )
