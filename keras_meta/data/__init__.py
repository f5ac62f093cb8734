"""Episodic `tf.data` pipelines: each element is a meta-batch `(x, y)`.

`x = {"support_x": [T, S, ...], "support_y": [T, S], "query_x": [T, Q, ...]}`
and `y = query_y [T, Q]`; every stream is endless and seeded.
"""

from keras_meta.data.episodes import episodes_from_arrays
from keras_meta.data.images import from_directory, from_tfds
from keras_meta.data.mini_imagenet import mini_imagenet
from keras_meta.data.omniglot import omniglot
from keras_meta.data.sinusoid import sinusoid

__all__ = [
    "episodes_from_arrays",
    "from_directory",
    "from_tfds",
    "mini_imagenet",
    "omniglot",
    "sinusoid",
]
