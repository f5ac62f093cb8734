"""Episodic `tf.data` pipelines: each element is a meta-batch `(x, y)`."""

from keras_meta.data.episodes import episodes_from_arrays
from keras_meta.data.omniglot import omniglot
from keras_meta.data.sinusoid import sinusoid

__all__ = ["episodes_from_arrays", "omniglot", "sinusoid"]
