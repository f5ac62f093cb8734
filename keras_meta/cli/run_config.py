"""`RunConfig`: the typed settings of one training run.

Two kinds of setting: the run's (data, budget, meta-optimizer, test: the
fields below) and the algorithm's (`options`, its constructor's arguments,
declared there alone: `keras_meta.cli.options`). Built once, in this order
of precedence: the defaults (the fields', the algorithm's run defaults and
its constructor's), a preset, then the flags given on the command line.
The flags of `train.<algorithm>` are generated from both, so `--helpfull`
shows the real defaults of that script.
"""

import dataclasses

from keras_meta import protocols

# Algorithm options that were RunConfig fields before they had their own
# entry, so that an older config.json still loads (`from_dict`).
LEGACY_FIELDS = {
    "inner_lr",
    "inner_steps",
    "eval_inner_steps",
    "inner_optimizer",
    "inner_batch_size",
    "shared_adam_state",
    "head_layers",
    "first_order",
    "multi_step_loss_iterations",
    "first_order_iterations",
    "bn_mode",
}


def _field(default, help, choices=None, lower=None, only=None):
    """A field with what its flag needs: help, allowed values or lower bound,
    and the algorithms it applies to (None: all)."""
    metadata = dict(help=help, choices=choices, lower=lower, only=only)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (saved as its `config.json`)."""

    algorithm: str = _field("maml", "The meta-learner (a registry name).")
    dataset: str = _field(
        "omniglot",
        "omniglot, mini_imagenet, sinusoid, any TFDS image-classification "
        "dataset name (e.g. cifar100), or a folder of class sub-folders.",
    )
    ways: int = _field(5, "N: classes per task.", lower=2)
    shots: int = _field(1, "K: support examples per class at test.", lower=1)
    train_ways: int | None = _field(
        None,
        "N of the meta-training tasks (default: ways). ProtoNet and "
        "Proto-MAML, whose prototypes take any number of classes, may train "
        "on more (Snell et al.: 60 for Omniglot); the others need ways.",
        lower=2,
    )
    train_shots: int | None = _field(
        None,
        "Support examples per class in meta-training (default: shots; "
        "Reptile's paper trains on 10).",
        lower=1,
    )
    queries: int = _field(15, "Query examples per class in training.", lower=1)
    eval_queries: int | None = _field(
        None,
        "Query examples per class for meta-validation (default: --queries; "
        "the test's come from --protocol).",
        lower=1,
    )
    meta_batch: int = _field(32, "T: tasks per meta-iteration.", lower=1)
    meta_lr: float = _field(
        1e-3, "Step size of the meta-optimizer (beta).", lower=0
    )
    meta_optimizer: str = _field("adam", "Meta-optimizer.", ("adam", "sgd"))
    meta_lr_schedule: str = _field(
        "constant",
        "constant; linear (annealed to 0 over the run, as Reptile does; "
        "over the time budget with --minutes); or cosine (MAML++).",
        ("constant", "linear", "cosine"),
    )
    batch_size: int = _field(
        256, "Pretrain: images per batch.", lower=1, only=("pretrain",)
    )
    iterations: int = _field(10000, "Meta-training iterations.", lower=1)
    minutes: float | None = _field(
        None,
        "Training time budget in minutes, more than 0 (meta-validation "
        "excluded): training stops when it is spent, even before "
        "--iterations.",
    )
    eval_every: int = _field(
        500, "Iterations between meta-validations (an epoch).", lower=1
    )
    val_tasks: int = _field(100, "Meta-validation tasks.", lower=1)
    protocol: str = _field(
        "maml",
        "Test protocol(s), comma-separated, the first the headline: maml "
        "(K queries per class, 600 tasks, transductive), reptile (1 query, "
        "10,000 tasks, both batch-norm modes), mamlpp (1 query, 600 tasks, "
        "both modes) or 15_queries (keras-meta's before 2026-12). A paper "
        "preset sets its paper's (README: Evaluation protocol).",
    )
    eval_tasks: int | None = _field(
        None,
        "Meta-test tasks for the final accuracy (default: the protocol's).",
        lower=1,
    )
    curve_tasks: int = _field(
        200,
        "Meta-test tasks per point of the accuracy-against-steps plot.",
        lower=1,
    )
    curve_steps: int = _field(
        10,
        "The accuracy-against-steps plot scores 0..curve_steps adaptation "
        "steps (each a separate evaluation).",
        lower=0,
    )
    checkpoint_every: int = _field(
        500, "Iterations between checkpoints.", lower=1
    )
    select: str = _field(
        "last",
        "Which model is tested: the last one, or the one with the best "
        "meta-validation score (never the test tasks).",
        ("last", "best_val"),
    )
    learner: str = _field(
        "conv4",
        "The learner: conv4 (the papers'; --filters, --pooling) or resnet12 "
        "(the few-shot literature's, 64-160-320-640 channels, for colour "
        "images of 84x84 and up).",
        ("conv4", "resnet12"),
    )
    filters: int = _field(64, "conv4: channels per block.", lower=1)
    pooling: str = _field(
        "stride",
        "conv4 downsampling: max-pooling; stride-2 convolutions and the "
        "spatial mean (MAML's Omniglot net); or stride-2 convolutions "
        "flattened (Reptile's).",
        ("max", "stride", "stride_flatten"),
    )
    channels: int = _field(
        3,
        "Image channels of a folder dataset: 3 (RGB) or 1 (grayscale).",
        lower=1,
    )
    image_size: int | None = _field(
        None,
        "Resize images to this square side (folders and TFDS datasets; "
        "Omniglot: 28).",
        lower=1,
    )
    seed: int = _field(0, "Random seed (weights, tasks).", lower=0)
    data_dir: str | None = _field(
        None,
        "TFDS data folder (default: $TFDS_DATA_DIR, else TFDS's own, "
        "downloading and preparing the dataset on first use).",
    )
    manual_dir: str | None = _field(
        None, "Mini-ImageNet: folder with images/ and split CSVs."
    )
    options: dict = dataclasses.field(
        default_factory=dict,
        metadata=dict(help="The algorithm's constructor arguments."),
    )

    @classmethod
    def fields(cls):
        """The fields that are flags (all but `algorithm` and `options`)."""
        return [
            f
            for f in dataclasses.fields(cls)
            if f.name not in ("algorithm", "options")
        ]

    def resolved(self):
        """With the `None` defaults that follow other fields filled in."""
        return dataclasses.replace(
            self,
            train_shots=self.train_shots or self.shots,
            eval_queries=self.eval_queries or self.queries,
        )

    def test_protocols(self):
        """The run's test protocols, the headline first."""
        return protocols.parse(self.protocol)

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A config from `config.json` (fields it lacks keep defaults). One
        written before the options had their own entry (its algorithm's
        options among the fields, and every other algorithm's too) is read
        with the options its algorithm takes moved into `options`."""
        from keras_meta.cli.registry import ALGORITHMS, option_owners

        values = dict(values)
        names = {f.name for f in dataclasses.fields(cls)}
        if "options" not in values:
            algorithm = ALGORITHMS.get(values.get("algorithm", "maml"))
            ours = {o.name for o in algorithm.options} if algorithm else set()
            legacy = set(option_owners()) | LEGACY_FIELDS
            values["options"] = {
                k: values[k] for k in list(values) if k in ours and k in legacy
            }
            for k in list(values):
                if k in legacy and k not in names:
                    del values[k]
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"config.json has settings this version does not know: "
                f"{unknown}."
            )
        return cls(**values)

    def check(self):
        """Usage errors a flag's type and bound cannot catch alone."""
        problems = []
        if not self.meta_lr > 0:
            problems.append(f"--meta_lr must be positive, got {self.meta_lr}")
        if self.channels not in (1, 3):
            problems.append(
                f"--channels must be 1 (grayscale) or 3 (RGB), got "
                f"{self.channels}"
            )
        if self.minutes is not None and not self.minutes > 0:
            problems.append(f"--minutes must be positive, got {self.minutes}")
        try:
            protocols.parse(self.protocol)
        except ValueError as e:
            problems.append(str(e).rstrip("."))
        if problems:
            raise ValueError("; ".join(problems) + ".")
        return self
