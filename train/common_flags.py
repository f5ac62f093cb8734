"""The flags shared by every training script (`--helpfull` lists them).

Flags left unset take the value of `--preset`, if one is given, else the
algorithm's default (`runner.DEFAULTS`). Names follow the papers: `ways` N,
`shots` K, `queries` per class, `meta_batch` T, `inner_lr` alpha, `meta_lr`
beta.
"""

from absl import flags

flags.DEFINE_string(
    "preset",
    None,
    "Named settings from a paper (see the README's preset table or "
    "`python -m train.presets`), e.g. quick, maml_omniglot_5w1s. Explicit "
    "flags override it.",
)
flags.DEFINE_string(
    "dataset",
    None,
    "omniglot, mini_imagenet, sinusoid, any TFDS image-classification "
    "dataset name (e.g. cifar100), or a folder of class sub-folders.",
)
flags.DEFINE_integer("ways", None, "N: classes per task.")
flags.DEFINE_integer("shots", None, "K: support examples per class at test.")
flags.DEFINE_integer(
    "train_shots",
    None,
    "Support examples per class in meta-training "
    "(default: shots; Reptile's paper trains on 10).",
)
flags.DEFINE_integer("queries", None, "Query examples per class in training.")
flags.DEFINE_integer(
    "eval_queries", None, "Query examples per class for validation and test."
)
flags.DEFINE_integer("meta_batch", None, "T: tasks per meta-iteration.")
flags.DEFINE_float("inner_lr", None, "Inner-loop step size (alpha).")
flags.DEFINE_integer("inner_steps", None, "Inner steps in meta-training.")
flags.DEFINE_integer("eval_inner_steps", None, "Inner steps at test time.")
flags.DEFINE_string(
    "inner_optimizer", None, "Reptile's inner optimizer: sgd or adam."
)
flags.DEFINE_integer("head_layers", None, "ANIL: layers the inner loop adapts.")
flags.DEFINE_boolean(
    "first_order", None, "MAML: drop the second-order terms (FOMAML)."
)
flags.DEFINE_float("meta_lr", None, "Step size of the meta-optimizer (beta).")
flags.DEFINE_string("meta_optimizer", None, "adam or sgd.")
flags.DEFINE_string(
    "meta_lr_schedule",
    None,
    "constant, or linear (annealed to 0 over the run, as Reptile does).",
)
flags.DEFINE_integer("batch_size", None, "Pretrain: images per batch.")
flags.DEFINE_integer("iterations", None, "Meta-training iterations.")
flags.DEFINE_integer(
    "eval_every", None, "Iterations between meta-validations (an epoch)."
)
flags.DEFINE_integer("val_tasks", None, "Meta-validation tasks.")
flags.DEFINE_integer(
    "eval_tasks", None, "Meta-test tasks for the final accuracy (papers: 600)."
)
flags.DEFINE_integer(
    "curve_tasks",
    None,
    "Meta-test tasks per point of the accuracy-against-steps plot.",
)
flags.DEFINE_integer(
    "checkpoint_every", None, "Iterations between checkpoints."
)
flags.DEFINE_string(
    "bn_mode",
    None,
    "Batch-norm statistics at evaluation: transductive (the query batch's, "
    "MAML's protocol) or non_transductive (the support set's).",
)
flags.DEFINE_integer("filters", None, "conv4: channels per block.")
flags.DEFINE_integer(
    "image_size",
    None,
    "Resize images to this square side (folders and TFDS datasets; "
    "Omniglot: 28).",
)
flags.DEFINE_string("pooling", None, "conv4: max or stride.")
flags.DEFINE_integer("seed", None, "Random seed (weights, tasks).")
flags.DEFINE_string(
    "data_dir",
    None,
    "TFDS data folder (default: ../shared/data/tfds beside the repository "
    "when present, else $TFDS_DATA_DIR or TFDS's own, downloading if needed).",
)
flags.DEFINE_string(
    "manual_dir", None, "Mini-ImageNet: folder with images/ and split CSVs."
)
flags.DEFINE_string(
    "output_dir", None, "Where the run writes (default saved_models/<run>)."
)
flags.DEFINE_string("run_name", None, "Name of the run (default: derived).")
flags.DEFINE_boolean(
    "resume", False, "Continue the run in output_dir from its checkpoint."
)
flags.DEFINE_boolean(
    "overwrite", False, "Delete what output_dir holds and start afresh."
)
flags.DEFINE_integer("verbose", 1, "Keras verbosity: 0, 1 (bar) or 2.")
flags.DEFINE_string(
    "task_parallelism",
    "auto",
    "Tasks of a meta-batch run at once, sharing the CPU cores "
    "(keras_meta.config.set_task_parallelism): a positive int, or auto (2 on "
    "a CPU-only host for the meta-learners, 1 for pretrain, whose large "
    "batches want every core per op). More tasks at once, more memory.",
)
flags.DEFINE_string(
    "strategy",
    "default",
    "tf.distribute strategy: default (one device), mirrored (all local "
    "GPUs), multi_worker (machines listed in $TF_CONFIG) or tpu. The tasks "
    "of a meta-batch are split across replicas; --meta_batch must be a "
    "multiple of their number.",
)

# Names of the flags that describe a run (saved in its config).
RUN_FLAGS = (
    "dataset",
    "ways",
    "shots",
    "train_shots",
    "queries",
    "eval_queries",
    "meta_batch",
    "inner_lr",
    "inner_steps",
    "eval_inner_steps",
    "inner_optimizer",
    "head_layers",
    "first_order",
    "meta_lr",
    "meta_optimizer",
    "meta_lr_schedule",
    "batch_size",
    "iterations",
    "eval_every",
    "val_tasks",
    "eval_tasks",
    "curve_tasks",
    "checkpoint_every",
    "bn_mode",
    "filters",
    "image_size",
    "pooling",
    "seed",
    "data_dir",
    "manual_dir",
)
