"""One source per setting: an algorithm's options are its constructor's
arguments, and the scripts' flags, presets and config.json follow them."""

import inspect
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import keras_meta
from keras_meta.cli import presets, registry
from keras_meta.cli.options import argument_docs, options_of
from keras_meta.cli.run_config import RunConfig


def test_every_algorithms_options_are_its_constructors_arguments():
    for name, algorithm in registry.ALGORITHMS.items():
        options = {o.name: o for o in options_of(algorithm.cls)}
        signature = inspect.signature(algorithm.cls.__init__).parameters
        for arg, parameter in signature.items():
            if arg in ("self", "learner", "ways", "name", "kwargs"):
                continue
            assert options[arg].default == parameter.default, (name, arg)
            assert options[arg].help, f"{name}: {arg} is undocumented"
        # The base class's options come along through **kwargs (ProtoNet,
        # with no inner loop, has no inner_lr).
        assert "bn_mode" in options
        assert ("inner_lr" in options) == (name != "protonet")


def test_mamlpps_options_are_all_reachable():
    names = {o.name for o in options_of(keras_meta.MAMLPlusPlus)}
    assert {
        "learned_rates",
        "multi_step_loss",
        "multi_step_loss_iterations",
        "first_order_iterations",
        "per_step_batch_norm",
    } <= names


def test_every_preset_names_only_settings_its_algorithm_has():
    fields = {f.name for f in RunConfig.fields()}
    for name, values in presets.PRESETS.items():
        algorithm = registry.ALGORITHMS[values["algorithm"]]
        options = {o.name for o in algorithm.options}
        unknown = set(presets.settings(name)) - fields - options - {"algorithm"}
        assert not unknown, (name, unknown)


def test_docstring_arguments_are_read_as_written():
    class Documented:
        """Summary.

        Args:
            alpha, beta: shared text
                over two lines.
            gamma: one line.
        """

    docs = argument_docs(Documented)
    assert docs == {
        "alpha": "shared text over two lines.",
        "beta": "shared text over two lines.",
        "gamma": "one line.",
    }


def test_an_old_config_json_loads_with_its_options_moved():
    old = {
        "algorithm": "reptile",
        "inner_lr": 0.001,
        "inner_steps": 3,
        "inner_optimizer": "adam",
        "first_order": False,  # every algorithm's field was written
        "bn_mode": "transductive",
        "meta_lr": 1.0,
    }
    config = RunConfig.from_dict(old)
    assert config.options == {
        "inner_lr": 0.001,
        "inner_steps": 3,
        "inner_optimizer": "adam",
        "bn_mode": "transductive",
    }
    assert config.meta_lr == 1.0
    with pytest.raises(ValueError, match="does not know"):
        RunConfig.from_dict({**old, "no_such_setting": 1})


TOY = textwrap.dedent("""
    import json, sys
    import keras, keras_meta
    from keras_meta.cli import registry, train

    @keras.saving.register_keras_serializable(package="toy")
    class Toy(keras_meta.MAML):
        '''MAML whose inner step is scaled.

        Args:
            toy_scale: multiplies the inner step size.
        '''

        def __init__(self, learner, toy_scale=1.0, **kwargs):
            super().__init__(learner, **kwargs)
            self.toy_scale = toy_scale

    registry.register("toy", Toy)
    train.main("toy", ["train.toy", *sys.argv[1:]])
""")


@pytest.mark.integration  # a child process per call
def test_a_new_algorithm_and_option_reach_the_command_line(tmp_path):
    """A toy algorithm with one new option: registered from outside
    keras_meta/cli, its option is a flag with its default and help."""
    script = tmp_path / "toy.py"
    script.write_text(TOY)

    # The repository on the path, whether or not keras_meta is installed.
    repo = str(pathlib.Path(__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH")
    path = os.pathsep.join([repo, inherited] if inherited else [repo])

    def toy(*flags):
        result = subprocess.run(
            [sys.executable, str(script), *flags],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert result.returncode in (0, 2), result.stderr[-3000:]
        return result

    shown = toy("--helpfull").stdout
    assert "--toy_scale: multiplies the inner step size." in shown
    assert "(default: '1.0')" in shown.split("--toy_scale:")[1][:200]
    printed = toy("--toy_scale=2.5", "--inner_lr=0.3", "--print_config")
    config = json.loads(printed.stdout)
    assert config["options"]["toy_scale"] == 2.5
    assert config["options"]["inner_lr"] == 0.3
    refused = toy("--head_layers=2", "--print_config")
    assert refused.returncode == 2
    expected = (
        "--head_layers applies to train.anil, train.boil and train.mamlpp only"
    )
    assert expected in refused.stderr
