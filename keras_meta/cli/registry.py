"""The algorithms the scripts know, each a meta-learner class: its
options (flags, defaults, checks) come from its constructor
(`keras_meta.cli.options`), so this file names classes, not settings.

`register(name, cls)` adds one, for `keras-meta train <name>` and
`python -m train.<name>`-style entry points; `build_model` makes a run's
compiled model from a `RunConfig`.
"""

import dataclasses
import inspect

import keras_meta
from keras_meta.cli.options import options_of


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A meta-learner the scripts can train.

    Attributes:
        name: the script's name (`keras-meta train <name>`).
        cls: the `keras_meta.MetaLearner` subclass; every argument of its
            constructor but `learner` and `ways` is an option (a flag).
        run_defaults: `RunConfig` fields (the run's settings, not the
            algorithm's) whose default differs for it, such as Reptile's
            meta-optimizer.
        episodic: whether it meta-trains on episodes (False: on plain
            `(image, class)` batches of every training class).
        embedding: whether its learner is an embedding, without a head
            (ProtoNet, Proto-MAML): its tasks may have any number of
            classes up to `ways`, so it may train on more (`--train_ways`).
    """

    name: str
    cls: type
    run_defaults: dict = dataclasses.field(default_factory=dict)
    episodic: bool = True
    embedding: bool = False

    @property
    def options(self):
        return options_of(self.cls)


ALGORITHMS = {}


def register(name, cls, run_defaults=None, episodic=True, embedding=False):
    """Makes meta-learner class `cls` trainable as `keras-meta train
    <name>`, its constructor options as flags. Returns the entry."""
    if not (isinstance(cls, type) and issubclass(cls, keras_meta.MetaLearner)):
        raise TypeError(f"{cls!r} is not a keras_meta.MetaLearner subclass.")
    options_of(cls)  # every option must be a flag: fail now, not at a run
    ALGORITHMS[name] = Algorithm(
        name, cls, dict(run_defaults or {}), episodic, embedding
    )
    return ALGORITHMS[name]


register("maml", keras_meta.MAML)
register("anil", keras_meta.ANIL)
register(
    "reptile",
    keras_meta.Reptile,
    run_defaults=dict(
        meta_optimizer="sgd", meta_lr=1.0, meta_lr_schedule="linear"
    ),
)
register("pretrain", keras_meta.Pretrain, episodic=False)
register("metasgd", keras_meta.MetaSGD)
register("boil", keras_meta.BOIL)
register("imaml", keras_meta.IMAML)
register("protonet", keras_meta.ProtoNet, embedding=True)
register("protomaml", keras_meta.ProtoMAML, embedding=True)
register(
    "mamlpp",
    keras_meta.MAMLPlusPlus,
    run_defaults=dict(meta_lr_schedule="cosine"),
)


def option_owners():
    """`{option: [algorithms that take it]}` over every registered one."""
    owners = {}
    for algorithm in ALGORITHMS.values():
        for option in algorithm.options:
            owners.setdefault(option.name, []).append(algorithm.name)
    return owners


def learner_for(config, train_data):
    """The learner of a run: conv4 or ResNet-12 sized to the data, or the
    sinusoid MLP."""
    import keras_meta

    if config.dataset == "sinusoid":
        return keras_meta.models.mlp()
    algorithm = ALGORITHMS[config.algorithm]
    spec = train_data.element_spec
    if algorithm.episodic:
        image_shape, outputs = spec[0]["query_x"].shape[-3:], config.ways
    else:
        image_shape, outputs = spec[0].shape[-3:], train_data.num_classes
    if algorithm.embedding:
        outputs = None  # the features are the output
    if config.learner == "resnet12":
        return keras_meta.models.resnet12(outputs, tuple(image_shape))
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
    algorithm = ALGORITHMS[config.algorithm]
    regression = config.dataset == "sinusoid"
    most_ways = max(config.ways, config.train_ways or config.ways)
    given = {"ways": None if regression else most_ways}
    arguments = {
        name: value
        for name, value in given.items()
        if name in inspect.signature(algorithm.cls).parameters
    }
    model = algorithm.cls(learner, **config.options, **arguments)
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
