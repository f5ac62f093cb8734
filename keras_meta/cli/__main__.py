"""`python -m keras_meta.cli <command> ...`: the `keras-meta` command."""

from keras_meta.cli import main

main()
