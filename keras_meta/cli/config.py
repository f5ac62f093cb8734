"""`RunConfig`: the typed settings of one training run.

Built once, in this order of precedence: the dataclass defaults, the
algorithm's own defaults (its registry entry), a preset, then the flags given
on the command line. The flags of `train.<algorithm>` are generated from the
fields below, so `--helpfull` shows the real default of that script.
"""

import dataclasses

from keras_meta import protocols


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
    train_shots: int | None = _field(
        None,
        "Support examples per class in meta-training (default: shots; "
        "Reptile's paper trains on 10).",
        lower=1,
    )
    queries: int = _field(15, "Query examples per class in training.", lower=1)
    eval_queries: int = _field(
        15,
        "Query examples per class for meta-validation (the test's come "
        "from --protocol).",
        lower=1,
    )
    meta_batch: int = _field(32, "T: tasks per meta-iteration.", lower=1)
    inner_lr: float = _field(0.4, "Inner-loop step size (alpha).", lower=0)
    inner_steps: int = _field(1, "Inner steps in meta-training.", lower=0)
    eval_inner_steps: int | None = _field(
        None, "Inner steps at test time (default: inner_steps).", lower=0
    )
    inner_optimizer: str = _field(
        "sgd", "Reptile's inner optimizer.", ("sgd", "adam"), only=("reptile",)
    )
    inner_batch_size: int | None = _field(
        None,
        "Reptile: support examples per inner step, cycling through the "
        "shuffled support set (default: all of it at every step).",
        lower=1,
        only=("reptile",),
    )
    shared_adam_state: bool = _field(
        True,
        "Reptile with Adam: its second moments carry over from task to task "
        "(the authors' code) instead of starting fresh for each task.",
        only=("reptile",),
    )
    head_layers: int = _field(
        1, "ANIL: layers the inner loop adapts.", lower=1, only=("anil",)
    )
    first_order: bool = _field(
        False,
        "Drop the second-order terms of the meta-gradient (FOMAML).",
        only=("maml", "metasgd"),
    )
    multi_step_loss_iterations: int = _field(
        5000,
        "MAML++: iterations over which the multi-step loss weights anneal "
        "towards the last step (0: last step only); with --minutes, the "
        "same share of the time budget as of --iterations.",
        lower=0,
        only=("mamlpp",),
    )
    first_order_iterations: int = _field(
        0,
        "MAML++: first-order meta-gradients for this many iterations, "
        "second-order after (derivative-order annealing); with --minutes, "
        "the same share of the time budget as of --iterations.",
        lower=0,
        only=("mamlpp",),
    )
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
        "Training time budget in minutes (meta-validation excluded): "
        "training stops when it is spent, even before --iterations.",
        lower=0,
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
    bn_mode: str = _field(
        "transductive",
        "Batch-norm statistics at evaluation: transductive (the query "
        "batch's, MAML's protocol) or non_transductive (the support set's).",
        ("transductive", "non_transductive"),
    )
    filters: int = _field(64, "conv4: channels per block.", lower=1)
    pooling: str = _field(
        "stride",
        "conv4 downsampling: max-pooling; stride-2 convolutions and the "
        "spatial mean (MAML's Omniglot net); or stride-2 convolutions "
        "flattened (Reptile's).",
        ("max", "stride", "stride_flatten"),
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
        "TFDS data folder (default: ../shared/data/tfds beside the "
        "repository when present, else $TFDS_DATA_DIR or TFDS's own, "
        "downloading if needed).",
    )
    manual_dir: str | None = _field(
        None, "Mini-ImageNet: folder with images/ and split CSVs."
    )

    @classmethod
    def fields(cls):
        """The fields that are flags (all but `algorithm`)."""
        return [f for f in dataclasses.fields(cls) if f.name != "algorithm"]

    def resolved(self):
        """With the `None` defaults that follow other fields filled in."""
        return dataclasses.replace(
            self,
            train_shots=self.train_shots or self.shots,
            eval_inner_steps=(
                self.inner_steps
                if self.eval_inner_steps is None
                else self.eval_inner_steps
            ),
        )

    def test_protocols(self):
        """The run's test protocols, the headline first."""
        return protocols.parse(self.protocol)

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A config from `config.json` (fields it lacks keep defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
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
        if not self.inner_lr > 0:
            problems.append(f"--inner_lr must be positive, got {self.inner_lr}")
        if not self.meta_lr > 0:
            problems.append(f"--meta_lr must be positive, got {self.meta_lr}")
        if self.minutes is not None and not self.minutes > 0:
            problems.append(f"--minutes must be positive, got {self.minutes}")
        try:
            protocols.parse(self.protocol)
        except ValueError as e:
            problems.append(str(e).rstrip("."))
        if self.algorithm == "reptile" and self.inner_steps < 1:
            problems.append(
                "--inner_steps must be >= 1 for reptile: with 0 steps its "
                "update is zero and no weight ever changes"
            )
        if problems:
            raise ValueError("; ".join(problems) + ".")
        return self
