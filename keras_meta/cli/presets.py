"""Named settings from the papers. Explicit flags override a preset.

Each preset gives the settings it sets (the run's, `RunConfig` fields, and
its algorithm's constructor options, by name), its test protocol, the
paper's test accuracy (`paper`, percent, or None) and where they come from
(`source`); tests/test_options.py checks that every name is one of the
two. `keras-meta presets` prints them as a table.
"""

# MAML (Finn, Abbeel and Levine, ICML 2017), Section 5.2 and Appendix A.1:
# Omniglot uses the strided conv4 (64 filters, spatial mean before the
# head), Mini-ImageNet the max-pool conv4 with 32 filters; meta-optimizer
# Adam at 1e-3; 60,000 iterations. MAML's code samples K query images per
# class for meta-training.
_MAML_OMNIGLOT = dict(
    dataset="omniglot",
    pooling="stride",
    filters=64,
    meta_lr=1e-3,
    iterations=60000,
)
_MAML_MINIIMAGENET = dict(
    protocol="maml",
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
_OMNIGLOT_5W1S = dict(
    protocol="maml",
    ways=5,
    shots=1,
    queries=1,
    meta_batch=32,
    inner_lr=0.4,
    inner_steps=1,
    eval_inner_steps=3,
    **_MAML_OMNIGLOT,
)
_OMNIGLOT_20W1S = dict(
    protocol="maml",
    ways=20,
    shots=1,
    queries=1,
    meta_batch=16,
    inner_lr=0.1,
    inner_steps=5,
    eval_inner_steps=5,
    **_MAML_OMNIGLOT,
)

# Snell et al.'s Omniglot training (jakesnell/prototypical-networks
# run_train.py): 60-way episodes, 5 queries per class, Adam at 1e-3.
_PROTONET_OMNIGLOT = dict(
    algorithm="protonet",
    protocol="protonet",
    dataset="omniglot",
    ways=5,
    train_ways=60,
    shots=1,
    queries=5,
    meta_batch=1,
    meta_lr=1e-3,
    iterations=20000,
    pooling="max",
    filters=64,
)

PRESETS = {
    "quick": dict(
        source="keras-meta: MAML Omniglot 5-way 1-shot on a CPU budget "
        "(about 10 minutes on 2 cores)",
        paper=None,
        algorithm="maml",
        protocol="maml",
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
        source="MAML paper, Table 1 (Omniglot 5-way 1-shot, 98.7 +- 0.4%); "
        "Sec. 5.2: 1 step of 0.4, meta-batch 32, 3 steps at test",
        paper=98.7,
        algorithm="maml",
        **_OMNIGLOT_5W1S,
    ),
    "fomaml_omniglot_5w1s": dict(
        source="Reptile paper (Nichol et al. 2018), Table 2: first-order "
        "MAML + transduction, Omniglot 5-way 1-shot, 98.3 +- 0.5%; MAML's "
        "Omniglot settings",
        paper=98.3,
        algorithm="maml",
        first_order=True,
        **{**_OMNIGLOT_5W1S, "protocol": "reptile"},
    ),
    "maml_omniglot_5w5s": dict(
        source="MAML paper, Table 1 (Omniglot 5-way 5-shot, 99.9 +- 0.1%)",
        paper=99.9,
        algorithm="maml",
        **{**_OMNIGLOT_5W1S, "shots": 5, "queries": 5},
    ),
    "maml_omniglot_20w1s": dict(
        source="MAML paper, Table 1 (Omniglot 20-way 1-shot, 95.8 +- 0.3%); "
        "Sec. 5.2: 5 steps of 0.1, meta-batch 16",
        paper=95.8,
        algorithm="maml",
        **_OMNIGLOT_20W1S,
    ),
    "maml_miniimagenet_5w1s": dict(
        source="MAML paper, Table 1 (Mini-ImageNet 5-way 1-shot, 48.70 +- "
        "1.84%); Sec. 5.2: 5 steps of 0.01, 10 at test, meta-batch 4",
        paper=48.7,
        algorithm="maml",
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "maml_miniimagenet_5w5s": dict(
        source="MAML paper, Table 1 (Mini-ImageNet 5-way 5-shot, 63.11 +- "
        "0.92%); meta-batch 2",
        paper=63.1,
        algorithm="maml",
        ways=5,
        shots=5,
        meta_batch=2,
        **_MAML_MINIIMAGENET,
    ),
    "fomaml_miniimagenet_5w1s": dict(
        source="MAML paper, Table 1, first-order approximation "
        "(Mini-ImageNet 5-way 1-shot, 48.07 +- 1.75%)",
        paper=48.1,
        algorithm="maml",
        first_order=True,
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "anil_omniglot_5w1s": dict(
        source="MAML's Omniglot 5-way 1-shot settings. The ANIL paper "
        "(Raghu et al. 2020) gives no 5-way Omniglot figure; its Table 2 "
        "has ANIL about equal to MAML at the same settings elsewhere",
        paper=None,
        algorithm="anil",
        **_OMNIGLOT_5W1S,
    ),
    "anil_omniglot_20w1s": dict(
        source="ANIL paper, Table 2 (Omniglot 20-way 1-shot, 96.2 +- 0.5%, "
        "MAML 93.7 +- 0.7% there); MAML's 20-way settings",
        paper=96.2,
        algorithm="anil",
        **_OMNIGLOT_20W1S,
    ),
    "anil_miniimagenet_5w1s": dict(
        source="ANIL paper, Table 2 (Mini-ImageNet 5-way 1-shot, 46.7 +- 0.4%)",
        paper=46.7,
        algorithm="anil",
        ways=5,
        shots=1,
        meta_batch=4,
        **_MAML_MINIIMAGENET,
    ),
    "reptile_omniglot_5w1s": dict(
        source="Reptile paper (Nichol et al. 2018), Table 2 (Reptile + "
        "transduction, Omniglot 5-way 1-shot, 97.68 +- 0.04%); the authors' "
        "command for it in openai/supervised-reptile's first README: "
        "15-shot training tasks, 3 Adam steps (beta1 = 0, its state shared "
        "across tasks) of 1e-3 on batches of 25, meta-batch 10, meta-step 1 "
        "annealed to 0, 5 steps at test, strided conv4 flattened before the "
        "head (the paper's Table 3 later gave simpler settings, 5 steps, "
        "10 shots, meta-batch 5, 50 test steps, which its authors found "
        "made little difference: supervised-reptile issue 10)",
        paper=97.68,
        algorithm="reptile",
        protocol="reptile",
        dataset="omniglot",
        ways=5,
        shots=1,
        train_shots=15,
        queries=1,
        meta_batch=10,
        inner_optimizer="adam",
        inner_lr=1e-3,
        inner_steps=3,
        inner_batch_size=25,
        eval_inner_steps=5,
        meta_optimizer="sgd",
        meta_lr=1.0,
        meta_lr_schedule="linear",
        iterations=100000,
        pooling="stride_flatten",
        filters=64,
    ),
    "metasgd_omniglot_5w1s": dict(
        source="Meta-SGD paper (Li et al. 2017), Table 1 (Omniglot 5-way "
        "1-shot, 99.53 +- 0.26%), one adaptation step; MAML's Omniglot "
        "network and settings, every rate starting at MAML's 0.4",
        paper=99.53,
        algorithm="metasgd",
        **_OMNIGLOT_5W1S,
    ),
    "mamlpp_omniglot_20w1s": dict(
        source="MAML++ paper (Antoniou et al. 2019), Table 1 (Omniglot "
        "20-way 1-shot, 97.65 +- 0.05%); the authors' configuration "
        "(HowToTrainYourMAMLPytorch omniglot_maml++ 20-way 1-shot): "
        "meta-batch 8, 5 steps from 0.1, max-pool conv4 of 64 filters, "
        "multi-step loss over 10 epochs of 500 iterations, second order "
        "throughout, cosine meta learning rate, 100 epochs",
        paper=97.65,
        algorithm="mamlpp",
        protocol="mamlpp",
        dataset="omniglot",
        ways=20,
        shots=1,
        queries=1,
        meta_batch=8,
        inner_lr=0.1,
        inner_steps=5,
        eval_inner_steps=5,
        multi_step_loss_iterations=5000,
        first_order_iterations=0,
        meta_lr=1e-3,
        meta_lr_schedule="cosine",
        iterations=50000,
        pooling="max",
        filters=64,
    ),
    "mamlpp_miniimagenet_5w1s": dict(
        source="MAML++ paper, Table 2 (Mini-ImageNet 5-way 1-shot, 52.15 "
        "+- 0.26%); the authors' configuration: meta-batch 2, 5 steps from "
        "0.01, max-pool conv4 of 48 filters, 15 queries, multi-step loss "
        "over 15 epochs of 500 iterations, cosine meta learning rate, 100 "
        "epochs",
        paper=52.15,
        algorithm="mamlpp",
        protocol="mamlpp",
        dataset="mini_imagenet",
        ways=5,
        shots=1,
        queries=15,
        meta_batch=2,
        inner_lr=0.01,
        inner_steps=5,
        eval_inner_steps=5,
        multi_step_loss_iterations=7500,
        first_order_iterations=0,
        meta_lr=1e-3,
        meta_lr_schedule="cosine",
        iterations=50000,
        pooling="max",
        filters=48,
    ),
    "pretrain_omniglot_5w1s": dict(
        source="pre-training baseline (MAML paper Sec. 5.2; ANIL paper "
        "Sec. 5): joint training on every training class, a fresh 5-way "
        "head fitted at test; no paper figure for this setting",
        paper=None,
        algorithm="pretrain",
        protocol="maml",
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
    "boil_omniglot_5w1s": dict(
        source="BOIL (Oh et al., ICLR 2021) reports no Omniglot figure; "
        "MAML's Omniglot 5-way 1-shot settings with the authors' body step "
        "0.5 and the head left out of the inner loop (HJ-Yoo/BOIL "
        "run_4conv.sh: extractor step 0.5, classifier step 0)",
        paper=None,
        algorithm="boil",
        **{**_OMNIGLOT_5W1S, "inner_lr": 0.5},
    ),
    "protonet_omniglot_5w1s": dict(
        source="Prototypical Networks (Snell et al. 2017), Table 1 "
        "(Omniglot 5-way 1-shot, 98.8%, no interval given); "
        "jakesnell/prototypical-networks: trained on 60-way tasks with 5 "
        "queries per class, one task per step, Adam at 1e-3 (halved every "
        "2,000 episodes there, constant here), conv4 with max-pooling and "
        "64 filters, its 64 features the embedding",
        paper=98.8,
        **_PROTONET_OMNIGLOT,
    ),
    "protonet_omniglot_20w1s": dict(
        source="Prototypical Networks (Snell et al. 2017), Table 1 "
        "(Omniglot 20-way 1-shot, 96.0%); the 5-way preset's training",
        paper=96.0,
        **{**_PROTONET_OMNIGLOT, "ways": 20},
    ),
    "imaml_omniglot_5w1s": dict(
        source="iMAML (Rajeswaran et al., NeurIPS 2019), Table 2 (Omniglot "
        "5-way 1-shot, iMAML with gradient descent, 99.16 +- 0.35%; the "
        "Hessian-free variant's 99.50 is not this one): 16 inner steps of "
        "0.1, lambda 2.0, 5 CG steps, meta-batch 32, Adam at 1e-3; "
        "aravindr93/imaml_dev's Omniglot command adds cg_damping 1.0 and "
        "its code a Hessian damping of 10",
        paper=99.16,
        algorithm="imaml",
        **{
            **_OMNIGLOT_5W1S,
            "inner_lr": 0.1,
            "inner_steps": 16,
            "eval_inner_steps": 16,
            "proximal_strength": 2.0,
            "cg_steps": 5,
            "cg_damping": 1.0,
            "hessian_damping": 10.0,
        },
    ),
    "protomaml_omniglot_5w1s": dict(
        source="Proto-MAML (Triantafillou et al., ICLR 2020) reports "
        "Meta-Dataset's variable-way, variable-shot tasks, no Omniglot "
        "5-way 1-shot figure; MAML's Omniglot 5-way 1-shot settings on "
        "conv4's features",
        paper=None,
        algorithm="protomaml",
        **_OMNIGLOT_5W1S,
    ),
    "maml_sinusoid": dict(
        source="MAML paper, Sec. 5.1: sinusoid regression, K = 10, one "
        "step of 0.01, meta-batch 25, 70,000 iterations",
        paper=None,
        algorithm="maml",
        protocol="maml",
        dataset="sinusoid",
        shots=10,
        queries=10,
        eval_queries=10,
        meta_batch=25,
        inner_lr=0.01,
        inner_steps=1,
        iterations=70000,
    ),
}

SETTINGS = ("source", "paper")


def settings(name):
    """The settings of preset `name` (without source and paper)."""
    return {k: v for k, v in PRESETS[name].items() if k not in SETTINGS}


def find(algorithm, dataset, ways, shots, first_order=False):
    """The name of the preset for these settings, or None."""
    for name, values in PRESETS.items():
        if name == "quick":
            continue
        if (
            values["algorithm"] == algorithm
            and values.get("dataset") == dataset
            and values.get("ways") == ways
            and values.get("shots") == shots
            and values.get("first_order", False) == first_order
        ):
            return name
    return None


def table():
    """The README's preset table, as Markdown."""
    lines = [
        "| preset | paper | sets | source |",
        "| --- | ---: | --- | --- |",
    ]
    for name, values in PRESETS.items():
        sets = ", ".join(
            f"`{k}={v}`" for k, v in values.items() if k not in SETTINGS
        )
        paper = "" if values["paper"] is None else f"{values['paper']}%"
        lines.append(f"| `{name}` | {paper} | {sets} | {values['source']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
