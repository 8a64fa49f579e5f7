"""A Label Studio project embedded on a real Ray cluster: the workers fetch the task images themselves.

A real Label Studio server (``labelstudio_server.py``) and a real two-node Ray
cluster (``ray_cluster.py``), both on 127.0.0.1, started and stopped by PID
here.  The project holds what users have: uploaded images, local files,
plain http(s) URLs of another host, a ``data:`` URI, one broken URL and one
upload that is not an image.  Its features on Ray must equal those of the
local path, where the driver downloads every image; the driver must write no
image file, a second run must embed nothing and reach no worker, and neither
API key may appear in what was printed or in any file of the Ray session.
"""

import base64
import functools
import http.server
import io
import os
import sqlite3
import threading
import time
import urllib.parse

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("label_studio_sdk")
pytest.importorskip("label_studio")

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from activeft_label.connectors import labelstudio as ls  # noqa: E402
from activeft_label.embeddings.cache import _CACHE_TABLE  # noqa: E402
from activeft_label.files.demo import demo_images  # noqa: E402

from labelstudio_server import LabelStudioServer  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')
UPLOADS, LOCAL_FILES, WEB = 24, 8, 4


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").resize((56, 56)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = LabelStudioServer(tmp_path_factory.mktemp("labelstudio"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A plain HTTP server of another origin (no auth) that records the Authorization headers it is sent.

    ``flaky.png`` answers 503 to every other request: each fetch of it must retry once.
    """
    folder = tmp_path_factory.mktemp("web")
    images, _, _, _ = demo_images(WEB + 1, seed=5)
    for k, image in enumerate(images[:WEB]):
        (folder / f"web{k}.png").write_bytes(_png(image))
    (folder / "flaky.png").write_bytes(_png(images[WEB]))
    seen, flaky = [], []

    class Recording(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            if self.path == "/flaky.png":
                flaky.append(1)
                if len(flaky) % 2:
                    self.send_error(503)
                    return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Recording, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def project(server, web):
    """40 tasks: 24 uploads, 1 upload that is not an image, 8 local files, 5 web URLs (one flaky), 1 data: URI, and
    1 broken URL."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=server.url, api_key=server.legacy_token)
    pid = client.projects.create(title="Ray fetches", label_config=CONFIG).id
    images, _, _, _ = demo_images(UPLOADS + LOCAL_FILES + 1, seed=7)
    files = [(f"f{k}", (f"up{k:02d}.png", _png(image), "image/png")) for k, image in enumerate(images[:UPLOADS])]
    files.append(("bad", ("not-an-image.png", b"this is not a PNG, only text", "image/png")))
    answer = httpx.post(f"{server.url}/api/projects/{pid}/import", files=files, timeout=120,
                        headers={"Authorization": f"Token {server.legacy_token}"})
    assert answer.status_code == 201, answer.text
    folder = os.path.join(server.local_files_root, "raypool")
    os.makedirs(folder, exist_ok=True)
    refs = []
    for k, image in enumerate(images[UPLOADS:UPLOADS + LOCAL_FILES]):
        with open(os.path.join(folder, f"local{k}.png"), "wb") as handle:
            handle.write(_png(image))
        refs.append("/data/local-files/?d=" + urllib.parse.quote(f"raypool/local{k}.png"))
    client.import_storage.local.create(project=pid, path=folder, use_blob_urls=True, title="raypool")
    url, _ = web
    inline = "data:image/png;base64," + base64.b64encode(_png(images[-1])).decode()
    more = ([{"image": ref} for ref in refs] + [{"image": f"{url}/web{k}.png"} for k in range(WEB)]
            + [{"image": f"{url}/flaky.png"}, {"image": inline}, {"image": f"{url}/missing.png"}])
    client.projects.import_tasks(id=pid, request=more, return_task_ids=True)
    conn = ls.connect(server.url, server.personal_token)
    found = ls.get_project(conn, pid)
    tasks = ls.pull_tasks(conn, pid)
    conn.close()
    assert len(tasks) == UPLOADS + 1 + LOCAL_FILES + WEB + 3
    return found, tasks


def test_fetch_needs_ray_and_keys():
    from activeft_label.embeddings import embed_images
    from activeft_label.errors import InputError

    with pytest.raises(InputError, match="needs ray_address and keys"):
        embed_images(["http://127.0.0.1:1/a.png"], keys=["a"], fetch=lambda source: (None, "no"))
    with pytest.raises(InputError, match="one non-empty string per path"):
        embed_images(["a.png", "b.png"], keys=["a"])


def _embed(server, project, key, cache_dir, **options):
    found, tasks = project
    with ls.connect(server.url, key) as conn:
        assert key not in repr(conn.remote_images())
        return ls.embed_tasks(conn, found, tasks, "image", cache_dir=cache_dir, precision="fp32", **options)


def _embedding_calls(calls):
    """The progress calls (fraction, text) of the embedding, not of the download bar."""
    return [call for call in calls if call[1].startswith("Embedding:")]


def _session_files(temp_dir):
    for root, _, names in os.walk(temp_dir):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield path


def test_ray_workers_fetch_the_task_images_with_the_same_results_as_the_driver(server, cluster, project, web,
                                                                                 tmp_path, capfd):
    url, authorizations = web
    started = time.monotonic()
    local = _embed(server, project, server.personal_token, tmp_path / "local", progress=False)
    local_s = time.monotonic() - started
    assert sorted(os.listdir(tmp_path / "local" / "labelstudio")) != []     # the local path downloads
    seen_by_web = len(authorizations)

    # On Ray, with a personal access token (the workers exchange it for access tokens themselves).
    calls = []
    started = time.monotonic()
    remote = _embed(server, project, server.personal_token, tmp_path / "ray", ray_address=cluster.address,
                    progress=lambda *args: calls.append(args))
    ray_s = time.monotonic() - started
    delta = float(np.abs(remote.features - local.features).max())
    with capfd.disabled():
        print(f"\nlocal {local_s:.1f} s, Ray {ray_s:.1f} s, {len(remote)} of {len(project[1])} images, "
              f"max |delta| {delta:.2e}")
    assert delta < 1e-4
    assert remote.rows.tolist() == local.rows.tolist() and remote.ids == local.ids
    assert remote.skipped == local.skipped
    ids = {task["data"]["image"]: task["id"] for task in project[1]}
    reasons = dict(remote.skipped)
    assert len(reasons) == 2
    assert reasons[ids[f"{url}/missing.png"]].endswith(": HTTP 404")
    bad = [task["id"] for task in project[1] if task["data"]["image"].endswith("not-an-image.png")]
    assert "not an image" in reasons[bad[0]]
    assert len(remote) == len(project[1]) - 2
    # The flaky URL was retried on the worker (it answered 503 first) and embedded.
    flaky = [k for k, task in enumerate(project[1]) if task["data"]["image"].endswith("/flaky.png")]
    assert flaky[0] in remote.rows.tolist()
    # Progress counted every image handed to the workers, the broken URL included.
    total = len(project[1])
    assert calls and calls[-1] == (1.0, f"Embedding: {total} of {total} images")
    # The driver downloaded nothing: no image file under its cache dir, only the embedding cache.
    assert not (tmp_path / "ray" / "labelstudio").exists()
    assert os.listdir(tmp_path / "ray") == ["embeddings.sqlite3"]
    # The other host was sent no key, by the driver or by a worker.
    assert len(authorizations) > seen_by_web and not any(authorizations)

    # Again: every image is cached or remembered, the broken URL is asked for once more here (it still fails),
    # and no worker is reached (an address where no cluster runs).
    calls = []
    again = _embed(server, project, server.personal_token, tmp_path / "ray", ray_address="127.0.0.1:1",
                   progress=lambda *args: calls.append(args))
    assert not _embedding_calls(calls)
    np.testing.assert_array_equal(again.features, remote.features)
    assert again.skipped == remote.skipped and again.ids == remote.ids

    # A local run after the Ray run reuses its rows (it downloads, and embeds nothing).
    db = tmp_path / "ray" / "embeddings.sqlite3"
    with sqlite3.connect(db) as con:
        stored = con.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE}").fetchone()[0]
    calls = []
    after = _embed(server, project, server.personal_token, tmp_path / "ray", progress=lambda *a: calls.append(a))
    assert not _embedding_calls(calls)
    assert after.skipped == local.skipped and after.ids == local.ids
    assert np.abs(after.features - local.features).max() < 1e-4
    with sqlite3.connect(db) as con:
        assert con.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE}").fetchone()[0] == stored

    # On Ray with the legacy token too, into a fresh cache.
    legacy = _embed(server, project, server.legacy_token, tmp_path / "legacy", ray_address=cluster.address,
                    progress=False)
    assert np.abs(legacy.features - local.features).max() < 1e-4 and legacy.skipped == local.skipped
    assert not (tmp_path / "legacy" / "labelstudio").exists()

    # Neither key, nor an access token the workers got for the personal one (every JWT of Label Studio begins
    # with the same header), in what was printed, or in any file of the Ray session.
    out, err = capfd.readouterr()
    secrets = [server.personal_token, server.legacy_token, server.personal_token.split(".")[0] + "."]
    for secret in secrets:
        assert secret not in out and secret not in err
    leaks = []
    files = list(_session_files(cluster.temp_dir))
    assert any("session_" in path and "logs" in path for path in files)
    for path in files:
        with open(path, "rb") as handle:
            data = handle.read()
        leaks += [path for secret in secrets if secret.encode() in data]
    assert not leaks
