"""keras-meta: meta-learning (MAML, ANIL, Reptile) as Keras models."""

from keras_meta import data, inner_loop, models
from keras_meta.anil import ANIL
from keras_meta.maml import MAML
from keras_meta.meta_learner import MetaLearner
from keras_meta.pretrain import Pretrain
from keras_meta.reptile import Reptile

__version__ = "0.1.0"

__all__ = [
    "ANIL",
    "MAML",
    "MetaLearner",
    "Pretrain",
    "Reptile",
    "data",
    "inner_loop",
    "models",
]
