"""tf.distribute: the tasks of a meta-batch split over replicas give the
same update as one device (MirroredStrategy on 2 logical CPUs, and two
MultiWorkerMirroredStrategy workers on 127.0.0.1)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

# The second tier: other processes, real data or real training.
pytestmark = pytest.mark.integration

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
REPO = WORKER.parent.parent
# The worker imports this checkout's keras_meta, installed or not.
ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    ),
}


def start(mode, algorithm, out, env=ENV):
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, algorithm, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def max_difference(a, b):
    a, b = np.load(a), np.load(b)
    assert list(a) == list(b)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


ALGORITHMS = ["maml", "fomaml", "anil", "reptile"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every algorithm trained on one device and on two mirrored ones, in
    two processes at once: `{mode: folder of weights}`."""
    folders = {m: tmp_path_factory.mktemp(m) for m in ("single", "mirrored")}
    processes = {
        m: start(m, ",".join(ALGORITHMS), out) for m, out in folders.items()
    }
    assert "replicas 1" in finish(processes["single"])
    assert "replicas 2" in finish(processes["mirrored"])
    return folders


def test_mirrored_strategy_matches_one_device(trained):
    differences = {
        name: max_difference(
            trained["single"] / f"{name}.npz",
            trained["mirrored"] / f"{name}.npz",
        )
        for name in ALGORITHMS
    }
    assert max(differences.values()) < 1e-5, differences


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # worker processes; MirroredStrategy runs by default
def test_multi_worker_strategy_matches_one_device(tmp_path, trained):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        workers.append(
            start(
                "multi_worker",
                "maml",
                tmp_path / f"worker{index}",
                env={**ENV, "TF_CONFIG": json.dumps(config)},
            )
        )
    for process in workers:
        assert "replicas 2" in finish(process)
    worker0, worker1 = (tmp_path / f"worker{i}" / "maml.npz" for i in (0, 1))
    assert max_difference(worker0, worker1) == 0.0
    assert max_difference(trained["single"] / "maml.npz", worker0) < 1e-5
