"""The settings every meta-learner has, checked when set, and its Keras
config: what `get_config`/`from_config` save and restore.

Setting `inner_steps`, `eval_inner_steps` or `bn_mode` drops the compiled
function it changes, so the next `fit`/`evaluate`/`predict` retraces.
"""

import keras

from keras_meta.checks import check_count
from keras_meta.engine import episode_checks

BN_MODES = ("transductive", "non_transductive")


def check_bn_mode(value):
    """`value` if it is one of `BN_MODES`, else a `ValueError`."""
    if value not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {value!r}.")
    return value


class Settings:
    """Mixin for `MetaLearner`: its checked settings and Keras config."""

    @property
    def bn_mode(self):
        """`"transductive"`: evaluation normalises query batch-norm
        activations with the statistics of the query batch itself (MAML's
        protocol). `"non_transductive"`: with the support set's alone, in
        inference mode, so that each query is classified independently of
        the others. Meta-training is always transductive."""
        return self._bn_mode

    @bn_mode.setter
    def bn_mode(self, value):
        self._bn_mode = check_bn_mode(value)
        self.test_function = self.predict_function = None  # retrace

    @property
    def inner_steps(self):
        """Inner steps per task during meta-training."""
        return self._inner_steps

    @inner_steps.setter
    def inner_steps(self, value):
        self._inner_steps = check_count(value, "inner_steps")
        self.train_function = None  # retrace with the new count

    @property
    def eval_inner_steps(self):
        """Inner steps per task in `evaluate`, `predict` and `model(x)`."""
        return self._eval_inner_steps

    @eval_inner_steps.setter
    def eval_inner_steps(self, value):
        self._eval_inner_steps = check_count(value, "eval_inner_steps")
        self.test_function = self.predict_function = None  # retrace

    @property
    def learner_spec(self):
        """The learner's input and output shapes, and N (`num_classes`)."""
        return episode_checks.LearnerSpec.of(self.learner, self.num_classes)

    @property
    def num_classes(self):
        """N for classification (the learner's logits), None for
        regression: `LearnerSpec`'s rule, which a subclass may override."""
        return episode_checks.LearnerSpec.of(self.learner).num_classes

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "learner": keras.saving.serialize_keras_object(self.learner),
            "inner_lr": self.inner_lr,
            "inner_steps": self.inner_steps,
            "eval_inner_steps": self.eval_inner_steps,
            "bn_mode": self.bn_mode,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        learner = keras.saving.deserialize_keras_object(config.pop("learner"))
        return cls(learner, **config)
