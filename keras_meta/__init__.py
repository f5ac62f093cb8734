"""keras-meta: meta-learning (MAML, ANIL, Reptile) as Keras models."""

from keras_meta import analysis, callbacks, config, data, inner_loop, models
from keras_meta.anil import ANIL
from keras_meta.evaluation import FewShotResult, evaluate_few_shot
from keras_meta.maml import MAML
from keras_meta.meta_learner import MetaLearner
from keras_meta.pretrain import Pretrain
from keras_meta.reptile import Reptile

__version__ = "0.1.0"

__all__ = [
    "ANIL",
    "FewShotResult",
    "MAML",
    "MetaLearner",
    "Pretrain",
    "Reptile",
    "analysis",
    "callbacks",
    "config",
    "data",
    "evaluate_few_shot",
    "inner_loop",
    "models",
]
