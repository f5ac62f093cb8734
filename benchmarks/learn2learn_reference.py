"""The learn2learn reference of `throughput.py`, for a side-by-side run.

Times the same configurations as `throughput.py` with learn2learn 0.2.0 on
PyTorch (CPU), written the way learn2learn's examples train: a Python loop
over the tasks of a meta-batch, `clone()` and `adapt()` per task and one
backward pass per task's query loss (gradients accumulate), then an Adam
meta-step. Reptile runs its inner Adam steps on a copy of the learner over
the task's support and query images, evaluates the query loss (as
learn2learn's Reptile example reports it), then moves the initialisation by
the mean of `phi - W` through the same Adam meta-optimizer (as
`throughput.py` does). ANIL follows its `examples/vision/anil_fc100.py`:
the body once over a task's support and query images together, then the
head cloned and adapted on the support features.
BOIL is learn2learn's ANIL example turned round (MAML wraps the body; the
head stays out of the inner loop); ProtoNet follows its
`examples/vision/protonet_miniimagenet.py` (one pass of the embedding over
support and query, prototypes as class means, minus squared distances as
logits).

It is not part of the library and never imported by it: run it with its own
interpreter, in a virtual environment of its own, e.g.

    python -m venv ../l2l-env
    ../l2l-env/bin/pip install torch==2.13.0 cython numpy
    ../l2l-env/bin/pip download --no-deps --no-binary learn2learn \
        --no-build-isolation learn2learn==0.2.0 -d ../l2l-src
    # Its sdist ships C files too old for Python 3.11: unpack it, run
    # `cython -3 learn2learn/data/*.pyx` inside, then from there
    # `../l2l-env/bin/pip install --no-build-isolation --no-deps .`
    # (`--no-binary :all:` would build every build dependency from source).
    ../l2l-env/bin/python benchmarks/learn2learn_reference.py --runs 2

Only `learn2learn.algorithms.MAML` is loaded (its package `__init__` imports
torchvision, which PyPI ships for a newer torch than the CPU build here).
Each row runs in a fresh process, so that peak memory is its own.
"""

import argparse
import copy
import importlib
import json
import os
import sys
import time
import types

# The cells and the row runner are throughput.py's own (its top level needs
# only the standard library, so this interpreter can import it).
from throughput import (
    CONFIGS,
    peak_rss_mib,
    run_reference,
    serve,
    timing_figures,
)

ALGORITHMS = (
    "maml",
    "fomaml",
    "anil",
    "reptile",
    "metasgd",
    "boil",
    "protonet",
)


def load_class(module="maml", name="MAML"):
    """`learn2learn.algorithms.<module>.<name>` (MAML, or MetaSGD from
    `meta_sgd`) without the package's __init__."""
    if "learn2learn.algorithms" not in sys.modules:  # the first call
        spec = importlib.util.find_spec("learn2learn")
        if spec is None:
            sys.exit("learn2learn is not installed in this interpreter.")
        for package_name in ("learn2learn", "learn2learn.algorithms"):
            package = types.ModuleType(package_name)
            package.__path__ = [
                os.path.join(
                    spec.submodule_search_locations[0],
                    *package_name.split(".")[1:],
                )
            ]
            sys.modules[package_name] = package
    return getattr(
        importlib.import_module(f"learn2learn.algorithms.{module}"), name
    )


def conv4(ways, shape, filters, pooling):
    """The conv4 learner of keras_meta.models.conv4, as (features, head)."""
    from torch import nn

    height, _, channels = shape
    layers = []
    size = height
    for block in range(4):
        layers += [
            nn.Conv2d(
                channels if block == 0 else filters,
                filters,
                3,
                stride=2 if pooling == "stride" else 1,
                padding=1,
            ),
            nn.BatchNorm2d(filters),
            nn.ReLU(),
        ]
        if pooling == "max":
            layers.append(nn.MaxPool2d(2))
            size //= 2
        else:
            size = (size + 1) // 2
    if pooling == "max":
        layers.append(nn.Flatten())
        width = filters * size * size
    else:
        layers.append(nn.AdaptiveAvgPool2d(1))
        layers.append(nn.Flatten())
        width = filters
    return nn.Sequential(*layers), nn.Linear(width, ways)


def measure(algorithm, config_name, warmup, iterations, serving=False):
    import torch
    from torch import nn

    MAML = load_class()
    import_rss_mib = peak_rss_mib()
    ways, shots, queries, tasks, shape, filters, pooling, steps, k = CONFIGS[
        config_name
    ]
    torch.manual_seed(0)
    features, head = conv4(ways, shape, filters, pooling)
    loss_fn = nn.CrossEntropyLoss()
    height, width, channels = shape
    support_shots = shots + queries if algorithm == "reptile" else shots
    support_x = torch.rand(tasks, ways * support_shots, channels, height, width)
    support_y = torch.arange(ways).repeat_interleave(support_shots)
    query_x = torch.rand(tasks, ways * queries, channels, height, width)
    query_y = torch.arange(ways).repeat_interleave(queries)

    if algorithm == "metasgd":
        meta = load_class("meta_sgd", "MetaSGD")(
            nn.Sequential(features, head), lr=0.4
        )
        parameters = meta.parameters()
    elif algorithm in ("maml", "fomaml"):
        meta = MAML(
            nn.Sequential(features, head),
            lr=0.4,
            first_order=algorithm == "fomaml",
        )
        parameters = meta.parameters()
    elif algorithm == "anil":
        meta = MAML(head, lr=0.4)
        parameters = list(features.parameters()) + list(meta.parameters())
    elif algorithm == "boil":
        # ANIL's example turned round: MAML wraps the body, the head stays
        # out of the inner loop (BOIL's classifier step of 0) and is
        # meta-trained by the outer loop alone.
        meta = MAML(features, lr=0.5)
        parameters = list(meta.parameters()) + list(head.parameters())
    elif algorithm == "protonet":
        # learn2learn's examples/vision/protonet_miniimagenet.py: the
        # embedding alone, one forward pass over support and query.
        meta = features
        parameters = meta.parameters()
    else:
        meta = nn.Sequential(features, head)
        parameters = meta.parameters()
    optimizer = torch.optim.Adam(parameters, 1e-3)

    def iteration():
        optimizer.zero_grad()
        if algorithm == "reptile":
            for p in meta.parameters():
                p.grad = torch.zeros_like(p)
            for t in range(tasks):
                fast = copy.deepcopy(meta)
                inner = torch.optim.Adam(fast.parameters(), 1e-3)
                for _ in range(k):
                    inner.zero_grad()
                    loss_fn(fast(support_x[t]), support_y).backward()
                    inner.step()
                with torch.no_grad():
                    # The query loss after adaptation, which learn2learn's
                    # Reptile example reports and keras-meta's fit computes.
                    loss_fn(fast(query_x[t]), query_y)
                for p, w in zip(meta.parameters(), fast.parameters()):
                    p.grad.add_((p.data - w.data) / tasks)
        elif algorithm == "protonet":
            for t in range(tasks):
                embeddings = meta(torch.cat([support_x[t], query_x[t]]))
                support = embeddings[: ways * shots]
                query = embeddings[ways * shots :]
                prototypes = support.reshape(ways, shots, -1).mean(dim=1)
                logits = -(
                    (query.unsqueeze(1) - prototypes.unsqueeze(0)) ** 2
                ).sum(dim=2)
                (loss_fn(logits, query_y) / tasks).backward()
        elif algorithm == "boil":
            for t in range(tasks):
                learner = meta.clone()
                for _ in range(steps):
                    learner.adapt(
                        loss_fn(head(learner(support_x[t])), support_y)
                    )
                (loss_fn(head(learner(query_x[t])), query_y) / tasks).backward()
        else:
            for t in range(tasks):
                learner = meta.clone()
                if algorithm == "anil":
                    # learn2learn's examples/vision/anil_fc100.py: the body
                    # once over support and query together (its batch norm
                    # then mixes the two sets' statistics; keras-meta's
                    # normalises each set by its own).
                    both = features(torch.cat([support_x[t], query_x[t]]))
                    support = both[: ways * shots]
                    query = both[ways * shots :]
                else:
                    support, query = support_x[t], query_x[t]
                for _ in range(steps):
                    learner.adapt(loss_fn(learner(support), support_y))
                # One backward pass per task, as learn2learn's examples do:
                # each task's graph is freed before the next one is built.
                (loss_fn(learner(query), query_y) / tasks).backward()
        optimizer.step()

    def run(count):
        """`count` iterations: their wall and CPU times."""
        times, cpu_times = [], []
        for _ in range(count):
            start, cpu_start = time.perf_counter(), time.process_time()
            iteration()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        return times, cpu_times

    if serving:
        times, cpu_times = serve(run, warmup)
        warmup = 0
    else:
        times, cpu_times = run(warmup + iterations)
    timing = timing_figures(times, cpu_times, warmup)
    return {
        "algorithm": algorithm,
        "config": config_name,
        **timing,
        "tasks_per_second": tasks / timing["seconds_per_iteration"],
        "peak_rss_mib": peak_rss_mib(),
        "import_rss_mib": import_rss_mib,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", nargs="+", choices=ALGORITHMS, default=ALGORITHMS
    )
    parser.add_argument(
        "--configs", nargs="+", choices=CONFIGS, default=CONFIGS
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--runs", type=int, default=1, help="runs per row")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(*args.child, args.warmup, args.iterations, args.serve)
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = [
        run_reference(algorithm, config_name, args, sys.executable)
        for config_name in args.configs
        for algorithm in args.only
        for _ in range(args.runs)
    ]
    command = "python benchmarks/learn2learn_reference.py " + " ".join(
        sys.argv[1:]
    )
    print(f"# reproduce: {command}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"command": command, "rows": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
