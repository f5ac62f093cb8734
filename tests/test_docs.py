"""Every file the README and the lab notebook cite is committed: a
published number points to a file a reader can open."""

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = ["README.md", "REPRODUCTION.md", "CHANGELOG.md", "benchmarks/README.md"]


def cited_paths(text):
    """Repository paths a document cites as results: saved_models/... and
    benchmarks/... outside commands (a command names where a run writes,
    which need not exist). A `*` in a path is a glob."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # command blocks
    text = re.sub(r"`(?:python|keras-meta|TF_\w+=\S+ python) [^`]*`", "", text)
    found = set()
    for match in re.finditer(r"(?:saved_models|benchmarks)/[\w./*-]+", text):
        path = match.group(0).rstrip(".,)")
        if "<" in path or path.endswith("/"):
            continue
        found.add(path)
    return sorted(found)


def exists(path):
    if "*" in path:
        return any(REPO.glob(path))
    return (REPO / path).exists()


@pytest.mark.parametrize("doc", DOCS)
def test_cited_files_exist(doc):
    missing = [
        p for p in cited_paths((REPO / doc).read_text()) if not exists(p)
    ]
    assert not missing, f"{doc} cites files that are not committed: {missing}"
