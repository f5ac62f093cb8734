"""The algorithms the scripts know: a registry, not an if/elif.

Each entry says how to build the meta-learner from a `RunConfig` and a
learner, and which defaults differ from `RunConfig`'s for that algorithm.
`build_model` adds the learner, the meta-optimizer and `compile`.
"""

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How `train.<name>` builds its model.

    Attributes:
        name: the script's name (`train.<name>`).
        build: `fn(config, learner) -> MetaLearner`.
        defaults: `RunConfig` fields whose default differs for it.
        episodic: whether it meta-trains on episodes (False: on plain
            `(image, class)` batches of every training class).
    """

    name: str
    build: Callable
    defaults: dict = dataclasses.field(default_factory=dict)
    episodic: bool = True


def _common(config):
    return dict(
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        eval_inner_steps=config.eval_inner_steps,
        bn_mode=config.bn_mode,
    )


def _maml(config, learner):
    import keras_meta

    return keras_meta.MAML(
        learner, first_order=config.first_order, **_common(config)
    )


def _anil(config, learner):
    import keras_meta

    return keras_meta.ANIL(
        learner, head_layers=config.head_layers, **_common(config)
    )


def _reptile(config, learner):
    import keras_meta

    return keras_meta.Reptile(
        learner,
        inner_optimizer=config.inner_optimizer,
        inner_batch_size=config.inner_batch_size,
        shared_adam_state=config.shared_adam_state,
        **_common(config),
    )


def _pretrain(config, learner):
    import keras_meta

    regression = config.dataset == "sinusoid"
    return keras_meta.Pretrain(
        learner,
        ways=None if regression else config.ways,
        adaptation="fine_tune" if regression else "fresh_head",
        **_common(config),
    )


def _metasgd(config, learner):
    import keras_meta

    return keras_meta.MetaSGD(
        learner, first_order=config.first_order, **_common(config)
    )


def _mamlpp(config, learner):
    import keras_meta

    return keras_meta.MAMLPlusPlus(
        learner,
        multi_step_loss_iterations=config.multi_step_loss_iterations,
        first_order_iterations=config.first_order_iterations,
        **_common(config),
    )


ALGORITHMS = {
    a.name: a
    for a in (
        Algorithm("maml", _maml),
        Algorithm("anil", _anil),
        Algorithm(
            "reptile",
            _reptile,
            defaults=dict(
                inner_steps=5,
                eval_inner_steps=50,
                inner_lr=0.001,
                inner_optimizer="adam",
                meta_optimizer="sgd",
                meta_lr=1.0,
                meta_lr_schedule="linear",
            ),
        ),
        Algorithm(
            "pretrain",
            _pretrain,
            defaults=dict(inner_lr=0.1, eval_inner_steps=100),
            episodic=False,
        ),
        Algorithm("metasgd", _metasgd),
        Algorithm(
            "mamlpp",
            _mamlpp,
            defaults=dict(
                inner_lr=0.1,
                inner_steps=5,
                meta_lr_schedule="cosine",
                first_order_iterations=25000,
            ),
        ),
    )
}


def learner_for(config, train_data):
    """The learner of a run: conv4 sized to the data, or the sinusoid MLP."""
    import keras_meta

    if config.dataset == "sinusoid":
        return keras_meta.models.mlp()
    algorithm = ALGORITHMS[config.algorithm]
    spec = train_data.element_spec
    if algorithm.episodic:
        image_shape, outputs = spec[0]["query_x"].shape[-3:], config.ways
    else:
        image_shape, outputs = spec[0].shape[-3:], train_data.num_classes
    return keras_meta.models.conv4(
        outputs, tuple(image_shape), config.filters, config.pooling
    )


def meta_optimizer(config):
    """The compiled optimizer, with the run's learning-rate schedule.

    A time budget (`minutes`) leaves the rate a plain float that
    `keras_meta.callbacks.TimeBudget` anneals over the time actually spent.
    """
    import keras

    rate = config.meta_lr
    if config.minutes is None:
        if config.meta_lr_schedule == "linear":
            rate = keras.optimizers.schedules.PolynomialDecay(
                rate, config.iterations, end_learning_rate=0.0
            )
        elif config.meta_lr_schedule == "cosine":
            # To 1% of the initial rate, as MAML++'s Omniglot runs (1e-5).
            rate = keras.optimizers.schedules.CosineDecay(
                rate, config.iterations, alpha=0.01
            )
    if config.meta_optimizer == "adam":
        return keras.optimizers.Adam(rate)
    return keras.optimizers.SGD(rate)


def build_model(config, train_data):
    """The compiled meta-learner of a run."""
    import keras

    learner = learner_for(config, train_data)
    model = ALGORITHMS[config.algorithm].build(config, learner)
    regression = config.dataset == "sinusoid"
    model.compile(
        optimizer=meta_optimizer(config),
        loss=(
            "mse"
            if regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        ),
        metrics=[] if regression else ["accuracy"],
    )
    return model
