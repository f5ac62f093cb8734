"""Named settings from the papers. Explicit flags override a preset.

Each preset gives the flag values it sets and where they come from; the
README's preset table is generated from this dict (`python -m
train.presets`).
"""

# MAML (Finn, Abbeel and Levine, ICML 2017), Section 5.2 and Appendix A.1:
# Omniglot uses the strided conv4 (64 filters), Mini-ImageNet the max-pool
# conv4 with 32 filters; meta-optimizer Adam at 1e-3; 60,000 iterations.
# MAML's code samples K query images per class for meta-training.
_MAML_OMNIGLOT = dict(
    dataset="omniglot",
    pooling="stride",
    filters=64,
    meta_lr=1e-3,
    iterations=60000,
    queries=1,
)
_MAML_MINIIMAGENET = dict(
    dataset="mini_imagenet",
    pooling="max",
    filters=32,
    meta_lr=1e-3,
    iterations=60000,
    queries=15,
    inner_lr=0.01,
    inner_steps=5,
    eval_inner_steps=10,
)

PRESETS = {
    "quick": dict(
        source="keras-meta: MAML Omniglot 5-way 1-shot on a CPU budget "
        "(about 10 minutes on 2 cores)",
        algorithm="maml",
        dataset="omniglot",
        ways=5,
        shots=1,
        queries=15,
        meta_batch=32,
        inner_lr=0.4,
        inner_steps=1,
        eval_inner_steps=3,
        pooling="stride",
        filters=64,
        meta_lr=1e-3,
        iterations=1500,
        eval_every=250,
        checkpoint_every=250,
    ),
    "maml_omniglot_5w1s": dict(
        source="MAML paper, Table 1 (Omniglot 5-way 1-shot, 98.7%); "
        "Sec. 5.2: 1 step of 0.4, meta-batch 32, 3 steps at test",
        algorithm="maml",
        ways=5,
        shots=1,
        meta_batch=32,
        inner_lr=0.4,
        inner_steps=1,
        eval_inner_steps=3,
        **_MAML_OMNIGLOT,
    ),
    "maml_omniglot_5w5s": dict(
        source="MAML paper, Table 1 (Omniglot 5-way 5-shot, 99.9%)",
        algorithm="maml",
        ways=5,
        shots=5,
        meta_batch=32,
        inner_lr=0.4,
        inner_steps=1,
        eval_inner_steps=3,
        **{**_MAML_OMNIGLOT, "queries": 5},
    ),
    "maml_omniglot_20w1s": dict(
        source="MAML paper, Table 1 (Omniglot 20-way 1-shot, 95.8%); "
        "Sec. 5.2: 5 steps of 0.1, meta-batch 16",
        algorithm="maml",
        ways=20,
        shots=1,
        meta_batch=16,
        inner_lr=0.1,
        inner_steps=5,
        eval_inner_steps=5,
        **_MAML_OMNIGLOT,
    ),
    "maml_miniimagenet_5w1s": dict(
        source="MAML paper, Table 1 (Mini-ImageNet 5-way 1-shot, 48.7%); "
        "Sec. 5.2: 5 steps of 0.01, 10 at test, meta-batch 4",
        algorithm="maml",
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "maml_miniimagenet_5w5s": dict(
        source="MAML paper, Table 1 (Mini-ImageNet 5-way 5-shot, 63.1%); "
        "meta-batch 2",
        algorithm="maml",
        ways=5,
        shots=5,
        meta_batch=2,
        **_MAML_MINIIMAGENET,
    ),
    "fomaml_miniimagenet_5w1s": dict(
        source="MAML paper, Table 1, first-order approximation (48.1%)",
        algorithm="maml",
        first_order=True,
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "anil_omniglot_5w1s": dict(
        source="ANIL paper (Raghu et al. 2020), Table 2 (Omniglot 5-way "
        "1-shot, 98.0%); MAML's hyper-parameters",
        algorithm="anil",
        ways=5,
        shots=1,
        meta_batch=32,
        inner_lr=0.4,
        inner_steps=1,
        eval_inner_steps=3,
        **_MAML_OMNIGLOT,
    ),
    "anil_miniimagenet_5w1s": dict(
        source="ANIL paper, Table 2 (Mini-ImageNet 5-way 1-shot, 46.7%)",
        algorithm="anil",
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "reptile_omniglot_5w1s": dict(
        source="Reptile paper (Nichol et al. 2018), Table 3 (Omniglot "
        "5-way 1-shot, 97.68% transductive); App. A: 5 Adam steps of 1e-3 "
        "on 10-shot training tasks, meta-step 1 annealed to 0, meta-batch "
        "5, 50 steps at test, 100,000 iterations",
        algorithm="reptile",
        dataset="omniglot",
        ways=5,
        shots=1,
        train_shots=10,
        queries=1,
        meta_batch=5,
        inner_optimizer="adam",
        inner_lr=1e-3,
        inner_steps=5,
        eval_inner_steps=50,
        meta_optimizer="sgd",
        meta_lr=1.0,
        meta_lr_schedule="linear",
        iterations=100000,
        pooling="max",
        filters=64,
    ),
    "pretrain_omniglot_5w1s": dict(
        source="pre-training baseline (MAML paper Sec. 5.2; ANIL paper "
        "Sec. 5): joint 4400-way training, a fresh 5-way head at test",
        algorithm="pretrain",
        dataset="omniglot",
        ways=5,
        shots=1,
        batch_size=256,
        meta_lr=1e-3,
        inner_lr=0.1,
        eval_inner_steps=100,
        iterations=20000,
        pooling="stride",
        filters=64,
    ),
}


def table():
    """The README's preset table, as Markdown."""
    lines = ["| preset | sets | source |", "| --- | --- | --- |"]
    for name, values in PRESETS.items():
        sets = ", ".join(
            f"`{k}={v}`" for k, v in values.items() if k != "source"
        )
        lines.append(f"| `{name}` | {sets} | {values['source']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
