"""keras-meta: meta-learning (MAML, ANIL, Reptile, Meta-SGD, MAML++) as
Keras models."""

# ruff: noqa: E402 (TensorFlow's kernels are chosen before it loads)
from keras_meta import _onednn  # isort: skip

_onednn.ask_before_tensorflow_loads()

from keras_meta import (
    analysis,
    callbacks,
    config,
    data,
    evaluation,
    inner_loop,
    layers,
    models,
    protocols,
    statistics,
)
from keras_meta.anil import ANIL
from keras_meta.boil import BOIL
from keras_meta.engine import MetaLearner, Task, TaskUpdate
from keras_meta.evaluation import FewShotResult, evaluate_few_shot
from keras_meta.imaml import IMAML
from keras_meta.maml import MAML
from keras_meta.mamlpp import MAMLPlusPlus
from keras_meta.metasgd import MetaSGD
from keras_meta.pretrain import Pretrain
from keras_meta.protonet import ProtoMAML, ProtoNet
from keras_meta.reptile import Reptile

# One thread per op for the tasks in flight, before TensorFlow starts
# (keras_meta.config's docstring says why and how to keep TensorFlow's own).
config.set_threads_at_import()

__version__ = "0.2.0"

__all__ = [
    "ANIL",
    "BOIL",
    "FewShotResult",
    "IMAML",
    "MAML",
    "MAMLPlusPlus",
    "MetaLearner",
    "MetaSGD",
    "Pretrain",
    "ProtoMAML",
    "ProtoNet",
    "Reptile",
    "Task",
    "TaskUpdate",
    "analysis",
    "callbacks",
    "config",
    "data",
    "evaluate_few_shot",
    "evaluation",
    "inner_loop",
    "layers",
    "models",
    "protocols",
    "statistics",
]
