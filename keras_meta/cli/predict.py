"""Few-shot predictions on your own images: `keras-meta predict` (or
`python -m train.predict`).

    keras-meta predict --model=saved_models/my_run --support=support/ \\
        --query=query/ --output=predictions.csv --sheet=sheet.png

`--support` is a folder of class sub-folders (`support/<class>/*.png`),
`--query` a folder of images or image files (comma-separated). The images
are prepared as the model's were (size, channels, scaling, Omniglot's
inversion: read from the SavedModel's `assets.extra/keras_meta.json`), the
SavedModel adapts to the support set and classifies the queries (the
serving signature, the path a deployment runs), and the CSV gives each
query's predicted class and the probability of every class (a softmax over
the support set's classes). `--sheet` draws the support images by class and
each query with its prediction. The queries go through the model as one
batch: under transductive batch norm (the default export) each is
normalised with the statistics of all of them.

Exit codes: 0 done; 2 bad input (an unreadable image, a class with no
image, more classes than the model's ways, no query image), with nothing
written.
"""

import csv
import io
import pathlib
import sys

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A run folder (with saved_model/) or a SavedModel folder."
)
flags.DEFINE_string(
    "support", None, "Folder of class sub-folders: <support>/<class>/<image>."
)
flags.DEFINE_list(
    "query", None, "A folder of query images, or image files (comma list)."
)
flags.DEFINE_string("output", "predictions.csv", "Where to write the CSV.")
flags.DEFINE_string(
    "sheet", None, "Also draw a contact sheet of support and queries (PNG)."
)


def saved_model_path(model):
    """The SavedModel folder of `--model` (a run folder or the SavedModel
    itself), or a `UsageError`."""
    from keras_meta.cli.errors import UsageError

    path = pathlib.Path(model)
    for candidate in (path / "saved_model", path):
        if (candidate / "saved_model.pb").exists():
            return candidate
    raise UsageError(
        f"--model={model} is neither a SavedModel folder nor a run folder "
        "with saved_model/: give a finished run's folder."
    )


def query_files(queries):
    """The query image files of `--query` (folders expanded, sorted)."""
    from keras_meta.cli.errors import UsageError
    from keras_meta.data.images import IMAGE_EXTENSIONS

    files = []
    for entry in queries:
        path = pathlib.Path(entry)
        if path.is_dir():
            files += sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"--query {entry} does not exist.")
    if not files:
        raise UsageError(
            f"--query {','.join(queries)} holds no image "
            f"({', '.join(IMAGE_EXTENSIONS)})."
        )
    return files


def softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Predictor:
    """A SavedModel that adapts and predicts, with its recorded image
    preparation: load once, `predict` any number of times (the serving
    function is traced once, when it is loaded)."""

    def __init__(self, model):
        import tensorflow as tf

        from keras_meta.cli.errors import UsageError
        from keras_meta.data.preprocessing import ImagePreprocessing
        from keras_meta.engine.serving import read_metadata

        path = saved_model_path(model)
        record = read_metadata(path)
        if not record or not record.get("preprocessing"):
            raise UsageError(
                f"{path} does not record how its images were prepared (an "
                "export older than keras-meta predict, or a regression "
                "model): export it again with the training scripts."
            )
        self.ways = record["ways"]
        self.preprocessing = ImagePreprocessing.from_dict(
            record["preprocessing"]
        )
        self.serve = tf.saved_model.load(str(path)).signatures[
            "serving_default"
        ]

    def predict(self, support_x, support_y, query_x):
        """Probabilities `[Q, k]` over the k classes of the support set."""
        classes = int(support_y.max()) + 1
        logits = self.serve(
            support_x=support_x, support_y=support_y, query_x=query_x
        )["logits"].numpy()
        return softmax(logits[:, :classes])


def read_task(predictor, support, queries):
    """`(support images, labels, class names, query files, query images)`,
    checked; a `UsageError` (or `ValueError`) names what is wrong."""
    from keras_meta.cli.errors import UsageError
    from keras_meta.data.images import list_directory

    files, labels, names = list_directory(support)
    if len(names) > predictor.ways:
        raise UsageError(
            f"--support has {len(names)} classes ({', '.join(names[:8])}"
            f"{', ...' if len(names) > 8 else ''}), but the model adapts "
            f"to at most {predictor.ways}-way tasks: give {predictor.ways} "
            "classes or fewer."
        )
    support_x = predictor.preprocessing.load(files)
    queries = query_files(queries)
    query_x = predictor.preprocessing.load(queries)
    if query_x.shape[1:] != support_x.shape[1:]:
        raise UsageError(
            f"The query images prepare to {query_x.shape[1:]} and the "
            f"support images to {support_x.shape[1:]}: give images of one "
            "size, or a model that resizes them."
        )
    return support_x, labels.astype(np.int32), names, queries, query_x


def write_csv(path, queries, names, probabilities):
    """The predictions as CSV text, written atomically."""
    from keras_meta.cli.run_folder import RunFolder

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "predicted", *[f"p_{n}" for n in names]])
    for file, p in zip(queries, probabilities):
        writer.writerow(
            [str(file), names[int(p.argmax())], *[f"{v:.4f}" for v in p]]
        )
    RunFolder.write_text(path, out.getvalue())


def draw_sheet(path, support_x, labels, names, queries, query_x, p):
    """The contact sheet: each class's support images on a row, then the
    queries, each titled with its prediction and probability."""
    from keras_meta import plots

    plt = plots.pyplot()
    columns = max(8, int(np.bincount(labels).max()))
    query_rows = -(-len(query_x) // columns)
    rows = len(names) + query_rows
    fig, axes = plt.subplots(
        rows, columns, figsize=(1.3 * columns, 1.45 * rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    gray = support_x.shape[-1] == 1
    for c, name in enumerate(names):
        for i, image in enumerate(support_x[labels == c][:columns]):
            axes[c, i].imshow(image.squeeze(), cmap="gray" if gray else None)
            if i == 0:
                axes[c, i].set_title(f"support: {name}", fontsize=7, loc="left")
    for q, image in enumerate(query_x):
        ax = axes[len(names) + q // columns, q % columns]
        ax.imshow(image.squeeze(), cmap="gray" if gray else None)
        best = int(p[q].argmax())
        ax.set_title(f"{names[best]} {p[q, best]:.0%}", fontsize=7)
    fig.tight_layout()
    plots.save_figure(fig, path)


def predict(model, support, queries, output, sheet=None):
    """Predicts and writes the CSV (and sheet); returns the probabilities."""
    predictor = Predictor(model)
    support_x, labels, names, files, query_x = read_task(
        predictor, support, queries
    )
    probabilities = predictor.predict(support_x, labels, query_x)
    if sheet:
        draw_sheet(
            sheet, support_x, labels, names, files, query_x, probabilities
        )
    write_csv(output, files, names, probabilities)
    print(f"Wrote {output}" + (f" and {sheet}" if sheet else ""))
    return probabilities


def main(argv):
    from absl import logging

    from keras_meta.cli.errors import UsageError

    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1 or not (FLAGS.model and FLAGS.support and FLAGS.query):
        print(
            "error: give --model, --support and --query (see --helpfull).",
            file=sys.stderr,
        )
        return 2
    import tensorflow as tf

    try:
        predict(
            FLAGS.model, FLAGS.support, FLAGS.query, FLAGS.output, FLAGS.sheet
        )
    except (UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tf.errors.InvalidArgumentError as e:
        # The SavedModel's own request checks (image size, finite values).
        print(
            f"error: the model refused the images: {e.message}",
            file=sys.stderr,
        )
        return 2
    return 0


def run(argv=None):
    """Entry point (`python -m train.predict`, `keras-meta predict`)."""
    from keras_meta.cli.flags import run_app

    run_app(main, argv)
