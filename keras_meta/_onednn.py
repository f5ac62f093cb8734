"""TensorFlow's oneDNN CPU kernels, asked for before TensorFlow loads.

TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads, and by default
turns its oneDNN CPU kernels on only on x86 CPUs with AVX-512 features. On
other x86 CPUs (AVX2) they make meta-training and a plain Keras `fit`
faster (benchmarks/README.md, "oneDNN", has the figures). This module imports
nothing of TensorFlow, so that `keras_meta/__init__.py` can use it first;
`keras_meta.config.onednn_enabled()` says which kernels the process got.
"""

import os
import platform
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
X86 = platform.machine().lower() in ("x86_64", "amd64")


def ask_before_tensorflow_loads():
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` on x86 if TensorFlow has not loaded
    yet; an explicit setting (such as `=0`) wins."""
    if X86 and "tensorflow" not in sys.modules:
        os.environ.setdefault(VARIABLE, "1")
