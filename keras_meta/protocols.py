"""The papers' test protocols, by name.

A protocol says how a paper tested: how many query images per class each
test task has, how many test tasks, which batch-norm mode(s), and how many
adaptation steps (None: the model's own `eval_inner_steps`, which the
paper presets set to their paper's). `evaluate_few_shot(..., protocol=)`
and the scripts' `--protocol` take them; `results.json` records the one
used beside every number. Each entry was checked against the paper and the
authors' released code (`source`).
"""

import dataclasses

BOTH_BN_MODES = ("transductive", "non_transductive")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a few-shot model is tested.

    Attributes:
        name: the name `--protocol` takes.
        queries: query examples per class in each test task; None for as
            many as the support set's shots (K), as MAML's code does.
        num_tasks: test tasks (each a fresh draw of N classes).
        bn_modes: the batch-norm modes reported, the first the headline.
        inner_steps: adaptation steps at test; None for the model's
            `eval_inner_steps`.
        source: where it comes from, and how it differs from the paper's
            own procedure where it must.
    """

    name: str
    queries: int | None
    num_tasks: int
    bn_modes: tuple = ("transductive",)
    inner_steps: int | None = None
    source: str = ""

    def __post_init__(self):
        from keras_meta.engine.settings import BN_MODES

        if self.queries is not None and self.queries < 1:
            raise ValueError(f"queries must be >= 1, got {self.queries}.")
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {self.num_tasks}.")
        unknown = [m for m in self.bn_modes if m not in BN_MODES]
        if not self.bn_modes or unknown:
            raise ValueError(
                f"bn_modes must be a non-empty tuple of {BN_MODES}, got "
                f"{self.bn_modes}."
            )

    def queries_per_class(self, shots):
        """Query examples per class for a K-shot task."""
        return shots if self.queries is None else self.queries

    def describe(self, shots=None):
        """One line, e.g. `maml: 1 query per class, 600 tasks,
        bn=transductive`."""
        if self.queries is None and shots is None:
            queries = "K queries per class"
        else:
            q = self.queries_per_class(shots)
            queries = f"{q} quer{'y' if q == 1 else 'ies'} per class"
        steps = (
            ""
            if self.inner_steps is None
            else f", {self.inner_steps} steps at test"
        )
        modes = " and ".join(self.bn_modes)
        return (
            f"{self.name}: {queries}, {self.num_tasks} tasks{steps}, bn={modes}"
        )

    def as_dict(self):
        return dataclasses.asdict(self)


PROTOCOLS = {
    "maml": Protocol(
        "maml",
        queries=None,
        num_tasks=600,
        source="Finn et al. 2017 and cbfinn/maml main.py: at test, K "
        "support and K query images per class (DataGenerator("
        "update_batch_size*2), on Omniglot and Mini-ImageNet alike; 15 "
        "queries only in Mini-ImageNet meta-training), 600 tasks "
        "(NUM_TEST_POINTS), batch norm always on the batch being "
        "classified; Table 1's +- is 1.96 std / sqrt(600) over the tasks",
    ),
    "reptile": Protocol(
        "reptile",
        queries=1,
        num_tasks=10000,
        bn_modes=BOTH_BN_MODES,
        source="Nichol et al. 2018 and openai/supervised-reptile "
        "reptile.py evaluate(): num_shots + 1 images per class (1 query), "
        "10,000 tasks (num_samples), both modes reported in Table 2. Its "
        "non-transductive mode classifies each query in a batch of the "
        "support set plus that query; ours normalises each query with the "
        "support set's statistics alone",
    ),
    "mamlpp": Protocol(
        "mamlpp",
        queries=1,
        num_tasks=600,
        bn_modes=BOTH_BN_MODES,
        source="Antoniou et al. 2019 and HowToTrainYourMAMLPytorch's "
        "configurations: 1 query per class (num_target_samples), 600 tasks "
        "(num_evaluation_tasks). Its code normalises with the batch's own "
        "statistics (F.batch_norm(..., training=True)), so transductive is "
        "the headline; non_transductive uses the per-step running "
        "statistics its paper describes. Not reproduced: its test-time "
        "ensemble of the best validation models, and its +- (a std over "
        "3 seeds, not a 95% interval)",
    ),
    "protonet": Protocol(
        "protonet",
        queries=5,
        num_tasks=1000,
        bn_modes=("non_transductive", "transductive"),
        source="Snell et al. 2017 and jakesnell/prototypical-networks "
        "run_eval.py: the trained model's 5 queries per class (data.query), "
        "1,000 test episodes, the network in eval mode (batch norm on the "
        "running statistics of training: each query alone); our "
        "non_transductive normalises with the support set's statistics",
    ),
    "15_queries": Protocol(
        "15_queries",
        queries=15,
        num_tasks=600,
        source="keras-meta's protocol before 2026-12: 15 queries per "
        "class, 600 tasks, transductive. No paper tests Omniglot this "
        "way; more queries per task make each task's accuracy less "
        "noisy and, under transductive batch norm, change its statistics",
    ),
}


def get(name):
    """The protocol named `name`, or a `ValueError` listing the choices."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"Unknown protocol {name!r}: choose among {', '.join(PROTOCOLS)}."
        ) from None


def parse(names):
    """A comma-separated list of protocol names, checked: a tuple of
    `Protocol`s (the first is the headline), or a `ValueError`."""
    parts = [n.strip() for n in names.split(",")] if names else []
    if not parts or any(not n for n in parts):
        raise ValueError(
            f"--protocol must name at least one protocol, got {names!r}: "
            f"choose among {', '.join(PROTOCOLS)}."
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"--protocol names one protocol twice: {names!r}.")
    return tuple(get(n) for n in parts)
