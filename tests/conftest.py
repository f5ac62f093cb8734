"""Shared fixtures: quiet TensorFlow, float64 scopes, the shared data folder."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# keras_meta before Keras, as users are told to import it: the tests then run
# on the CPU kernels users get (keras_meta/_onednn.py).
import keras_meta  # noqa: E402, F401  # isort: skip
import keras  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir():
    """`../shared/data` beside the checkout (or $KERAS_META_SHARED_DATA)."""
    return pathlib.Path(
        os.environ.get(
            "KERAS_META_SHARED_DATA", REPO.parent / "shared" / "data"
        )
    )


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not (path / "README.md").exists():
        pytest.fail(
            f"The shared data folder {path} is missing; tests need it (set "
            "KERAS_META_SHARED_DATA to its location)."
        )
    return path


@pytest.fixture
def float64():
    """Runs a test with Keras's default float type set to float64."""
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.clear_session()
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Tests that share a module-scoped fixture form one `xdist_group`, so
    that under `pytest -n 2 --dist loadgroup` (the README's command) they
    run on one worker and the fixture (often a whole training run) is built
    once."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = sorted(
            name
            for name in info.names_closure
            if any(
                d.scope == "module" for d in info.name2fixturedefs.get(name, ())
            )
        )
        if shared:
            group = f"{item.module.__name__}:{'+'.join(shared)}"
            item.add_marker(pytest.mark.xdist_group(group))
