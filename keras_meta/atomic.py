"""Atomic writes: build a file or folder beside its target, then rename it
into place, so that a failure (or Ctrl-C) never leaves half of it behind."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; on success renames it onto
    `path` (replacing a file or folder that was there), on failure removes
    it and leaves `path` as it was.

    `suffix` is kept at the end of the temporary name (for example
    `".keras"`, which Keras requires of model files).
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(
        prefix=f".{os.path.basename(path)}.tmp-", dir=parent
    )
    try:
        staged = os.path.join(workdir, "staged" + suffix)
        yield staged
        if not os.path.exists(staged):
            raise FileNotFoundError(f"Nothing was written to {staged}.")
        if os.path.isdir(path) and not os.path.islink(path):
            # A folder cannot be replaced in one rename: move it aside first.
            os.rename(path, os.path.join(workdir, "previous"))
        os.replace(staged, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
