"""Your own images, from folders to predictions: the README's commands run
as written on PNG files (Omniglot's test characters, and synthetic colour
images), then `keras-meta predict` checked against the labels and against
the Keras model's own adapted predictions."""

import csv
import pathlib

import keras
import numpy as np
import pytest
from PIL import Image
from test_scripts import data_dir_flag, run_module

import keras_meta  # noqa: F401  (registers the classes load_model reads)

pytestmark = pytest.mark.integration


def omniglot_pngs(root, characters=40, per_character=20):
    """`root/<character>/<i>.png`: Omniglot test characters as the
    original files look (black strokes on white, 28x28 grayscale)."""
    from keras_meta.data.omniglot import load_arrays

    images, labels, _ = load_arrays(
        "test", 28, data_dir_flag().split("=", 1)[1], download=False
    )[:3]
    for c, label in enumerate(np.unique(labels)[:characters]):
        folder = root / f"char_{c:02d}"
        folder.mkdir(parents=True)
        strokes = images[labels == label][:per_character, ..., 0]
        for i, image in enumerate(strokes):
            pixels = np.round(255 * (1.0 - image)).astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{i:02d}.png")
    return root


def colour_pngs(root, classes=30, per_class=6, size=16, seed=0):
    """`root/<class>/<i>.png`: each class a colour and a stripe pattern,
    with noise (RGB, 16x16)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        colour = rng.uniform(40, 215, 3)
        stripes = (np.arange(size) // (1 + c % 4)) % 2
        for i in range(per_class):
            pixels = colour + 40 * stripes[:, None, None] * (c % 3 - 1)
            pixels = pixels + rng.normal(0, 12, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                folder / f"{i}.png"
            )
    return root


def split_task(root, out, ways, shots):
    """A task from the held-out classes of `root` (the last ones: the
    scripts' test split): `out/support/<class>/` and `out/query/`, query
    files named `<class>__<i>.png`. Returns the query labels by file."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())[-ways:]
    truth = {}
    for folder in classes:
        files = sorted(folder.iterdir())
        (out / "support" / folder.name).mkdir(parents=True)
        for f in files[:shots]:
            (out / "support" / folder.name / f.name).write_bytes(f.read_bytes())
        (out / "query").mkdir(exist_ok=True)
        for f in files[shots : shots + 4]:
            name = f"{folder.name}__{f.name}"
            (out / "query" / name).write_bytes(f.read_bytes())
            truth[name] = folder.name
    return truth


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "kind", ["omniglot", pytest.param("colour", marks=pytest.mark.slow)]
)
def test_from_a_folder_of_images_to_predictions(tmp_path, kind):
    if kind == "omniglot":
        root = omniglot_pngs(tmp_path / "characters")
        train = ["--channels=1", "--iterations=60"]
        algorithm, ways = "anil", 5
    else:
        root = colour_pngs(tmp_path / "photos")
        train = ["--iterations=30"]
        algorithm, ways = "maml", 3
    run = tmp_path / "run"
    # The README's command, on the folder.
    run_module(
        f"train.{algorithm}",
        f"--dataset={root}",
        f"--ways={ways}",
        "--shots=1",
        "--queries=1",
        "--meta_batch=4",
        "--filters=16",
        "--eval_every=30",
        "--val_tasks=20",
        "--eval_tasks=40",
        "--curve_tasks=10",
        "--curve_steps=1",
        *train,
        f"--output_dir={run}",
        timeout=1200,
    )
    truth = split_task(root, tmp_path / "task", ways, shots=1)
    done = run_module(
        "train.predict",
        f"--model={run}",
        f"--support={tmp_path / 'task' / 'support'}",
        f"--query={tmp_path / 'task' / 'query'}",
        f"--output={tmp_path / 'predictions.csv'}",
        f"--sheet={tmp_path / 'sheet.png'}",
    )
    assert "Wrote" in done.stdout
    rows = read_csv(tmp_path / "predictions.csv")
    names = sorted(set(truth.values()))
    assert [pathlib.Path(r["file"]).name for r in rows] == sorted(truth)
    probabilities = np.array(
        [[float(r[f"p_{n}"]) for n in names] for r in rows]
    )
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    predicted = [r["predicted"] for r in rows]
    assert predicted == [names[i] for i in probabilities.argmax(axis=1)]
    hits = np.mean(
        [
            p == truth[pathlib.Path(r["file"]).name]
            for p, r in zip(predicted, rows)
        ]
    )
    assert hits > 1.0 / ways  # above chance, on held-out classes

    # The serving path agrees with the Keras model's own adaptation, on
    # images decoded here with PIL (not keras-meta's code).
    model = keras.models.load_model(run / "model.keras")
    mode = "L" if kind == "omniglot" else "RGB"

    def pil(files):
        arrays = [
            np.asarray(Image.open(f).convert(mode), np.float32) / 255
            for f in files
        ]
        return np.stack(arrays).reshape(
            len(files), *model.learner_spec.input_shape
        )

    support = sorted((tmp_path / "task" / "support").rglob("*.png"))
    labels = np.array([names.index(f.parent.name) for f in support], np.int32)
    queries = [
        tmp_path / "task" / "query" / r["file"].split("/")[-1] for r in rows
    ]
    logits = model.adapted_predictions(
        {
            "support_x": pil(support)[None],
            "support_y": labels[None],
            "query_x": pil(queries)[None],
        }
    )[0].numpy()[:, : len(names)]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=2e-3)
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.size[0] > 400


def test_bad_inputs_exit_2_naming_the_problem(tmp_path, tiny_folder_run):
    run, root = tiny_folder_run
    split_task(root, tmp_path / "good", 3, shots=1)
    support, query = tmp_path / "good" / "support", tmp_path / "good" / "query"
    image = next(root.rglob("*.png")).read_bytes()

    def folder(name, files):
        for relative, data in files.items():
            (tmp_path / name / relative).parent.mkdir(
                parents=True, exist_ok=True
            )
            (tmp_path / name / relative).write_bytes(data)
        return tmp_path / name

    broken = folder("broken", {"a/0.png": b"not an image", "b/0.png": image})
    empty_class = folder("empty_class", {"a/0.png": image})
    (empty_class / "b").mkdir()
    many = folder("many", {f"c{c}/0.png": image for c in range(5)})
    (tmp_path / "no_images").mkdir()
    cases = [
        ([f"--support={broken}", f"--query={query}"], "a/0.png"),
        ([f"--support={empty_class}", f"--query={query}"], "b' holds no image"),
        ([f"--support={many}", f"--query={query}"], "at most 3-way"),
        (
            [f"--support={support}", f"--query={tmp_path / 'no_images'}"],
            "holds no image",
        ),
        (
            [f"--support={support}", f"--query={tmp_path / 'nowhere'}"],
            "does not exist",
        ),
    ]
    for flags, message in cases:
        out = tmp_path / "out.csv"
        result = run_module(
            "train.predict",
            f"--model={run}",
            *flags,
            f"--output={out}",
            check=False,
        )
        assert result.returncode == 2, (flags, result.stderr[-2000:])
        assert message in result.stderr, (flags, result.stderr[-2000:])
        assert not out.exists()


@pytest.fixture(scope="module")
def tiny_folder_run(tmp_path_factory):
    """A 3-way MAML trained for 4 iterations on colour folders."""
    tmp = tmp_path_factory.mktemp("folder_run")
    root = colour_pngs(tmp / "photos")
    run = tmp / "run"
    run_module(
        "train.maml",
        f"--dataset={root}",
        "--ways=3",
        "--queries=1",  # meta-validation follows it (6 images per class)
        "--meta_batch=2",
        "--filters=4",
        "--iterations=4",
        "--eval_every=2",
        "--val_tasks=4",
        "--eval_tasks=4",
        "--curve_tasks=4",
        "--curve_steps=1",
        f"--output_dir={run}",
    )
    return run, root
