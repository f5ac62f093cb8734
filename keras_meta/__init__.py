"""keras-meta: meta-learning (MAML, ANIL, Reptile, Meta-SGD, MAML++) as
Keras models."""

# ruff: noqa: E402 (the setting below must come before TensorFlow loads)
import os as _os
import platform as _platform
import sys as _sys

# TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, and by default
# turns its oneDNN CPU kernels on only on x86 CPUs with AVX-512 features. On
# other x86 CPUs (AVX2, such as this project's AMD EPYC development machine)
# they made conv4 meta-training 1.4-1.8x faster and lighter
# (benchmarks/README.md, "oneDNN"), so keras-meta asks for them when it is
# imported before TensorFlow. An explicit setting, such as
# TF_ENABLE_ONEDNN_OPTS=0, wins; `keras_meta.config.onednn_enabled()` says
# which kernels the process got.
if "tensorflow" not in _sys.modules and _platform.machine().lower() in (
    "x86_64",
    "amd64",
):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from keras_meta import analysis, callbacks, config, data, inner_loop, models
from keras_meta.anil import ANIL
from keras_meta.engine import MetaLearner, Task, TaskUpdate
from keras_meta.evaluation import FewShotResult, evaluate_few_shot
from keras_meta.maml import MAML
from keras_meta.mamlpp import MAMLPlusPlus
from keras_meta.metasgd import MetaSGD
from keras_meta.pretrain import Pretrain
from keras_meta.reptile import Reptile

__version__ = "0.2.0"

__all__ = [
    "ANIL",
    "FewShotResult",
    "MAML",
    "MAMLPlusPlus",
    "MetaLearner",
    "MetaSGD",
    "Pretrain",
    "Reptile",
    "Task",
    "TaskUpdate",
    "analysis",
    "callbacks",
    "config",
    "data",
    "evaluate_few_shot",
    "inner_loop",
    "models",
]
