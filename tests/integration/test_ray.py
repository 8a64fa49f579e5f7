"""Embedding on a real Ray cluster: a head and a worker node on 127.0.0.1, started and stopped by these tests."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from ray_cluster import RayCluster

from activeft_label.embeddings import embed_images
from activeft_label.embeddings.cache import _CACHE_TABLE
from activeft_label.files.demo import demo_images, write_pngs

pytest.importorskip("ray")

ENV = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")


def _images(folder, count, broken=True):
    images, _, _, _ = demo_images(count, seed=3)
    paths = write_pngs(images, folder)
    if broken:
        bad = os.path.join(folder, "zz_broken.png")
        with open(bad, "wb") as handle:
            handle.write(b"this is not a PNG")
        paths = list(paths) + [bad]
    return [str(p) for p in paths]


def _rows(cache):
    db = os.path.join(cache, "embeddings.sqlite3")
    if not os.path.exists(db):
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE} WHERE dim > 0").fetchone()[0]
    except sqlite3.OperationalError:           # the table is not made yet, or the writer holds the lock
        return 0


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "activeft_label.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kwargs.pop("env", ENV), **kwargs)


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _images(str(tmp_path_factory.mktemp("ray_images")), 48)


def test_features_on_ray_match_the_local_path_and_land_in_the_same_cache(cluster, images, tmp_path):
    local = embed_images(images, cache_dir=False, progress=False, precision="fp32")
    told = []
    on_ray = embed_images(images, cache_dir=tmp_path / "cache", ray_address=cluster.address, precision="fp32",
                          progress=lambda done, total: told.append((done, total)))
    assert on_ray.kept.tolist() == local.kept.tolist()
    assert on_ray.skipped == local.skipped and local.skipped[0][0].endswith("zz_broken.png")
    assert np.abs(on_ray.features - local.features).max() < 1e-4
    assert told and told[-1] == (len(images), len(images))        # every image, the broken one included
    # The rows are in the local cache: the next run embeds nothing and never reaches the cluster.
    again = embed_images(images, cache_dir=tmp_path / "cache", ray_address="127.0.0.1:1", precision="fp32",
                         progress=False)
    assert again.cached == len(images) - 1 and again.embedded == 0
    np.testing.assert_array_equal(again.features, on_ray.features)


def test_the_command_line_embeds_on_ray(cluster, images, tmp_path):
    folder = os.path.dirname(images[0])
    out = tmp_path / "features.npz"
    env = dict(ENV, ACTIVEFT_RAY_ADDRESS=cluster.address, ACTIVEFT_CACHE_DIR=str(tmp_path / "cache"))
    proc = _cli("embed", folder, "-o", str(out), "-q", env=env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"Embedded {len(images) - 1} items (0 from cache)" in stdout
    assert "zz_broken.png" in stderr and "Traceback" not in stderr
    assert np.load(out)["features"].shape == (len(images) - 1, 1280)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_wrong_address_says_so_within_seconds(images, tmp_path):
    folder = os.path.dirname(images[0])
    port = _free_port()
    started = time.monotonic()
    proc = _cli("embed", folder, "-o", str(tmp_path / "f.npz"), "-q", "--no-cache", "--ray", f"127.0.0.1:{port}")
    _, stderr = proc.communicate(timeout=120)
    assert time.monotonic() - started < 60
    assert proc.returncode == 1, stderr
    assert f"cannot reach a Ray cluster at 127.0.0.1:{port}" in stderr and "ray start --head" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "f.npz").exists()

    proc = _cli("embed", folder, "-o", str(tmp_path / "f.npz"), "-q", "--ray", "no-port-here")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "is not HOST:PORT" in stderr and "Traceback" not in stderr


def _run_until_rows(args, cache, env, at_least, timeout=240):
    """Start the CLI; return it once the cache holds ``at_least`` rows (it is still running)."""
    proc = _cli(*args, env=dict(env, ACTIVEFT_CACHE_DIR=cache))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and _rows(cache) < at_least:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    return proc


def test_an_interrupted_job_is_completed_by_the_rerun_embedding_only_the_rest(cluster, tmp_path):
    paths = _images(str(tmp_path / "images"), 240, broken=False)
    cache = str(tmp_path / "cache")
    env = dict(ENV, ACTIVEFT_RAY_ADDRESS=cluster.address)
    args = ["embed", os.path.dirname(paths[0]), "-o", str(tmp_path / "f.npz"), "-q", "--precision", "fp32",
            "--batch-size", "16"]
    proc = _run_until_rows(args, cache, env, 16)
    proc.send_signal(signal.SIGKILL)                  # the driver dies: the job is abandoned mid-way
    proc.communicate(timeout=60)
    kept = _rows(cache)
    assert 0 < kept < len(paths)
    proc = _cli(*args, env=dict(env, ACTIVEFT_CACHE_DIR=cache))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    cached = int(stdout.split("(")[1].split(" from cache")[0])
    assert cached >= kept                             # only what the cache lacked was embedded again
    assert _rows(cache) == len(paths)
    local = embed_images(paths, cache_dir=False, progress=False, precision="fp32")
    assert np.abs(np.load(tmp_path / "f.npz")["features"] - local.features).max() < 1e-4


def test_a_worker_node_killed_mid_job_costs_time_not_the_run(tmp_path):
    paths = _images(str(tmp_path / "images"), 240, broken=False)
    cache = str(tmp_path / "cache")
    with RayCluster(workers=1) as own:                # its own cluster: this test takes a node away
        env = dict(ENV, ACTIVEFT_RAY_ADDRESS=own.address)
        args = ["embed", os.path.dirname(paths[0]), "-o", str(tmp_path / "f.npz"), "-q", "--precision", "fp32",
                "--batch-size", "16"]
        proc = _run_until_rows(args, cache, env, 16)
        own.kill_node(own.nodes[1])                   # the worker node, SIGKILL to all its processes
        stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"Embedded {len(paths)} items" in stdout
    assert _rows(cache) == len(paths)                 # one row per image: nothing stored twice
    local = embed_images(paths, cache_dir=False, progress=False, precision="fp32")
    assert np.abs(np.load(tmp_path / "f.npz")["features"] - local.features).max() < 1e-4
