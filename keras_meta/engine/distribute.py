"""tf.distribute: the meta-batch split over replicas, and the Keras
workarounds it needs, in one place.

The T tasks of a meta-batch are split over the replicas; each replica
averages its own tasks and the optimizer sums the replicas, so each
replica's mean is divided by the replica count first (`scale_to_global`):
the update is then the mean over all T tasks, as on one device.

`KerasIssue20585` gathers what keras-team/keras#20585 (Keras's `fit` fails
under MultiWorkerMirroredStrategy) requires; when Keras fixes it, delete the
class and its base in `MetaLearner`. The private Keras method it overrides
is listed in `keras_meta.compat`, whose test fails by name if it changes.
"""

import tensorflow as tf

from keras_meta import compat


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_to_global(grads):
    """Per-replica means over tasks, scaled so their sum is the mean over
    every replica's tasks."""
    replicas = num_replicas()
    return grads if replicas == 1 else [g / replicas for g in grads]


def mean_over_replicas(value):
    """`value`'s mean over the replicas (itself on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or num_replicas() == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def multi_worker(strategy):
    """Whether `strategy` spans several workers (MultiWorkerMirrored)."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and compat.num_workers(strategy) > 1
    )


class KerasIssue20585:
    """Mixin for `keras.Model` subclasses that take episode dicts.

    1. Under tf.distribute, Keras builds the compiled loss and metrics from a
       batch it takes from the training iterator and averages across
       replicas, which fails for episode dicts under
       MultiWorkerMirroredStrategy (and spends a batch of the stream). The
       model keeps the first batch it checked (`remember_sample`), which
       serves instead.
    2. Keras averages logs across workers along axis 0, which a scalar
       lacks: `logs_for_workers` gives them one.
    """

    def remember_sample(self, sample):
        # A plain attribute, not tracked by Keras.
        self.__dict__["_build_sample"] = sample

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        sample = self.__dict__.get("_build_sample")
        if (
            compat.distribute_strategy(self) is None
            or sample is None
            or not isinstance(sample[0], dict)
            or sample[1] is None
        ):
            return super()._maybe_symbolic_build(iterator, data_batch)
        with self.distribute_strategy.scope():
            compat.symbolic_build(self, sample)

    @staticmethod
    def logs_for_workers(logs):
        if multi_worker(tf.distribute.get_strategy()):
            return {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs
