"""Command-line tools: training scripts, analysis and comparison.

    keras-meta train <algorithm> [flags]   one run (python -m train.<algorithm>)
    keras-meta evaluate --run=RUN --protocol=P   test a run under protocol P
    keras-meta predict --model=RUN --support=DIR --query=DIR   your images
    keras-meta compare [flags]             every algorithm side by side
    keras-meta analyze --model=RUN         rapid learning or feature reuse?
    keras-meta directions [flags]          the update directions, drawn
    keras-meta presets                     the papers' settings, as a table

From a checkout, `python -m train.<name>` runs the same code.
"""

import os
import sys

COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "compare",
    "analyze",
    "directions",
    "presets",
)


def main(argv=None):
    """The `keras-meta` console entry point."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(0 if argv[1:2] in (["-h"], ["--help"]) else 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command, rest = argv[1], argv[2:]
    if command == "presets":
        from keras_meta.cli import presets

        print(presets.table())
        return
    if command == "train":
        from keras_meta.cli import registry, train

        if not rest or rest[0] not in registry.ALGORITHMS:
            print(
                "usage: keras-meta train {"
                + ",".join(registry.ALGORITHMS)
                + "} [flags]",
                file=sys.stderr,
            )
            sys.exit(2)
        train.main(rest[0], [f"keras-meta train {rest[0]}", *rest[1:]])
        return
    module = __import__(f"keras_meta.cli.{command}", fromlist=["main"])
    module.run([f"keras-meta {command}", *rest])
