"""Episode checks at every entry point of a meta-learner (a mixin of
`MetaLearner`)."""

import keras
import tensorflow as tf

from keras_meta.engine.episode_checks import unpack


class EpisodeInputs:
    """Episode checks at every entry of a `keras.Model` (a mixin of
    `MetaLearner`): `episode` for a batch, and `fit`/`evaluate`/`predict`
    check the first batch eagerly, so that a bad dataset fails before any
    tracing, with a `ValueError` that says what is wrong."""

    def episode(self, x, y=None, sample_weight=None):
        """Checks an episode batch (`keras_meta.engine.episode_checks`)."""
        return unpack(
            x, y, sample_weight, self.learner_spec, type(self).__name__
        )

    def _check_first_batch(self, x, y=None, sample_weight=None):
        """Checks the first batch of what `fit`/`evaluate`/`predict` got,
        eagerly, so that a bad dataset fails before any tracing; keeps it to
        build the compiled metrics from under tf.distribute."""
        if isinstance(x, tf.data.Dataset):
            for batch in x.take(1):
                x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                    batch
                )
                break
            else:
                return
        if isinstance(x, dict):
            self.episode(x, y, sample_weight)
            self._check_ways(x["support_y"])
            self.remember_sample((x, y))

    def _check_ways(self, support_y):
        """A classifier whose outputs outnumber the episodes' ways would
        spread every task's softmax over classes it never sees: refused,
        from the first batch's support labels (each task labels its N
        classes 0..N-1)."""
        outputs = self.learner_spec.num_classes
        labels = tf.convert_to_tensor(support_y)
        if not getattr(self, "fixed_ways", True):
            return  # prototypes: any task up to `ways` classes
        if outputs is None or labels.shape.rank != 2 or not labels.shape[1]:
            return
        labels = labels.numpy()
        ways = int(labels.max()) + 1
        every_task_has_all = all(
            set(task.tolist()) == set(range(ways)) for task in labels
        )
        if every_task_has_all and ways < outputs:
            raise ValueError(
                f"The learner has {outputs} outputs, but the episodes are "
                f"{ways}-way (each task's support labels are 0..{ways - 1}): "
                "the extra outputs would share every task's softmax. Build "
                f"the learner with {ways} outputs (for example "
                f"keras_meta.models.conv4(ways={ways}))."
            )

    def fit(self, x=None, y=None, *args, **kwargs):
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # episodes are random already
        self._check_first_batch(x, y, kwargs.get("sample_weight"))
        if self.optimizer is not None and not self.optimizer.built:
            # Slots in `trainable_variables` order, as `load_model` builds
            # them, whatever order `meta_variables` lists.
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        validation = kwargs.get("validation_data")
        if isinstance(validation, tf.data.Dataset):
            self._check_first_batch(validation)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_first_batch(x, y, kwargs.get("sample_weight"))
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_first_batch(x)
        return super().predict(x, *args, **kwargs)
