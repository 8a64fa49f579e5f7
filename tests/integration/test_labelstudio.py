"""Label Studio connector and CLI, against a real Label Studio server.

One server per test session (see ``labelstudio_server.py``): 127.0.0.1, a free
port, a fresh data dir, both a legacy token and a personal access token.  The
images are real (Fashion-MNIST, or scikit-learn digits) PNG files written
here, embedded by the real EfficientNet-Lite0 encoder.  Nothing of Label
Studio's API is mocked; the failure tests put a real HTTP proxy between the
client and the server that drops or fails requests.
"""

import base64
import csv
import functools
import http.client
import http.server
import json
import os
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("label_studio_sdk")
pytest.importorskip("label_studio")

import httpx  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import labelstudio as ls  # noqa: E402
from activeft_label.files.demo import demo_images  # noqa: E402
from activeft_label.errors import ActiveFTError, InputError  # noqa: E402

from labelstudio_server import LabelStudioServer, free_port  # noqa: E402

BUDGET = 12
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real Label Studio server for the whole session, stopped by PID at the end."""
    base = tmp_path_factory.mktemp("labelstudio")
    instance = LabelStudioServer(base)
    instance.start()
    yield instance
    instance.stop()


# One torch thread for this module (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def client(server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.legacy_token)


@pytest.fixture(scope="session")
def pool_dir(server):
    """30 real PNG images in class folders, under the server's local-files document root."""
    images, labels, _, _ = demo_images(30, seed=1)
    folder = Path(server.local_files_root) / "pool"
    for k, (image, label) in enumerate(zip(images, labels)):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(image, mode="L").resize((56, 56)).save(folder / f"class{label}" / f"img{k:02d}.png")
    return folder


@pytest.fixture(scope="session")
def expected(pool_dir):
    """The pool and selection that `setup --budget 12` must produce (same seed, same encoder)."""
    import torch

    from activeft_label.files.pool import load_pool
    from activeft_label.selection import select

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pool = load_pool(str(pool_dir), cache_dir=False, progress=False)
        result = select(pool.features, BUDGET)
    finally:
        torch.set_num_threads(threads)
    ranked_ids = [pool.ids[row] for row in result.ranked_indices]
    return pool, result, ranked_ids


@pytest.fixture(scope="module")
def web_server(tmp_path_factory, pool_dir):
    """A plain HTTP server (no auth) with a few real PNG files, a text file, and nothing at /missing.png."""
    folder = tmp_path_factory.mktemp("web")
    sources = sorted(pool_dir.rglob("*.png"))[:4]
    for k, path in enumerate(sources):
        (folder / f"web{k}.png").write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def user_project(server, client, pool_dir, web_server):
    """An existing project the way users have them: uploaded images, local files, plain URLs, broken ones.

    Returns a dict: ``id``, ``broken`` (task ids that must be skipped), ``annotated`` (task ids with an
    annotation), ``tasks`` (all task ids).
    """
    project = client.projects.create(title="Existing project", label_config=CONFIG)
    pid = project.id
    headers = {"Authorization": f"Token {server.legacy_token}"}
    paths = sorted(pool_dir.rglob("*.png"))
    # 14 images uploaded the ordinary way (each file becomes a task with data.image = /data/upload/...).
    files = [(f"f{k}", (p.name, p.read_bytes(), "image/png")) for k, p in enumerate(paths[4:18])]
    answer = httpx.post(f"{server.url}/api/projects/{pid}/import", files=files, headers=headers, timeout=60)
    assert answer.status_code == 201, answer.text
    # Local files (a storage is connected, not synced) and plain http(s) URLs.
    client.import_storage.local.create(project=pid, path=str(pool_dir), use_blob_urls=True, title="pool")
    rel = [os.path.relpath(p, server.local_files_root) for p in paths[24:27]]
    more = [{"image": "/data/local-files/?d=" + urllib.parse.quote(r)} for r in rel]
    more += [{"image": f"{web_server}/web{k}.png"} for k in range(4)]
    broken = [{"image": f"{web_server}/missing.png"}, {"image": f"{web_server}/notes.txt"},
              {"image": "/data/upload/999/nothing-here.png"}, {"image": "/data/local-files/?d=pool/nope.png"},
              {"image": "picture.png"}]
    imported = client.projects.import_tasks(id=pid, request=more + broken + [{"image": "x"}], return_task_ids=True)
    ids = list(imported.task_ids)
    no_field = ids[-1]
    client.tasks.update(id=str(no_field), data={"caption": "a task without an image field"})
    tasks = [t.id for t in client.tasks.list(project=pid, fields="task_only")]
    uploaded = sorted(set(tasks) - set(ids))
    annotated = uploaded[:2]
    for task_id in annotated:
        client.annotations.create(id=task_id, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                       "value": {"choices": ["a"]}}])
    return {"id": pid, "broken": ids[len(more):len(more) + len(broken)] + [no_field], "annotated": annotated,
            "tasks": sorted(tasks)}


def run(server, args, key="personal", env=None, expect=0):
    """Run `activeft ...` in-process; check the exit code and that no key leaks into the output."""
    environment = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": None}
    if key == "personal":
        environment["LABEL_STUDIO_API_KEY"] = server.personal_token
    elif key == "legacy":
        environment["LABEL_STUDIO_API_KEY"] = server.legacy_token
    environment.update(env or {})
    started = time.monotonic()
    result = CliRunner().invoke(main, args, env=environment, catch_exceptions=False)
    result.elapsed = time.monotonic() - started
    text = result.output  # stdout and stderr, as the user sees them
    assert result.exit_code == expect, text
    for secret in (server.personal_token, server.legacy_token, (env or {}).get("LABEL_STUDIO_API_KEY")):
        if secret:
            assert secret not in text
    assert "Traceback" not in text
    result.text = text
    return result


def project_by_title(client, title):
    found = [p for p in client.projects.list() if p.title == title]
    assert len(found) == 1, [p.title for p in found]
    return found[0]


def all_tasks(client, pid):
    return list(client.tasks.list(project=pid, fields="task_only", page_size=1000))


def priority_view(client, pid):
    views = [v for v in client.views.list(project=pid) if (v.data or {}).get("title") == ls.VIEW_TITLE]
    assert len(views) == 1
    return views[0]


def ranked(client, pid):
    """Tasks of the priority view, in the view's order."""
    view = priority_view(client, pid)
    return list(client.tasks.list(project=pid, view=view.id, fields="task_only"))


def fetch(server, ref, key):
    url = server.url + ref if ref.startswith("/") else ref
    headers = {"Authorization": f"Token {key}"} if url.startswith(server.url) else {}
    response = httpx.get(url, headers=headers, timeout=30, follow_redirects=True)
    assert response.status_code == 200, (ref, response.status_code)
    return response.content


# --------------------------------------------------------------------------------------------------------------
# setup


def test_setup_from_folder_end_to_end(server, client, pool_dir, expected):
    pool, _, ranked_ids = expected
    title = "Setup upload"
    args = ["labelstudio", "setup", str(pool_dir), "--title", title, "--labels", "a,b,c", "--budget", str(BUDGET),
            "--images", "upload", "--quiet"]
    first = run(server, args, key="personal")
    project = project_by_title(client, title)
    assert f"{server.url}/projects/{project.id}" in first.output
    assert f"{BUDGET} tasks imported" in first.output

    tasks = all_tasks(client, project.id)
    assert len(tasks) == BUDGET
    assert project.sampling == "Sequential sampling"
    assert "<Choices" in project.label_config and 'value="c"' in project.label_config

    # The priority view lists exactly the selection, in rank order.
    listed = ranked(client, project.id)
    assert [t.data["activeft_rank"] for t in listed] == list(range(1, BUDGET + 1))
    assert [t.data["activeft_id"] for t in listed] == ranked_ids
    # Imported in rank order: sequential sampling serves rank 1 first too.
    assert [t.id for t in listed] == sorted(t.id for t in listed)

    # Every image loads over HTTP and is the very file of its id.
    for task in listed:
        assert task.data["image"].startswith("/data/upload/")
        source = pool_dir / task.data["activeft_id"]
        assert fetch(server, task.data["image"], server.legacy_token) == source.read_bytes()

    # The labeling stream of the view ("Label tasks as displayed") starts with rank 1.
    view = priority_view(client, project.id)
    body = {"view": view.id, "filters": view.data["filters"], "ordering": view.data["ordering"]}
    answer = httpx.request("GET", f"{server.url}/api/projects/{project.id}/next", json=body, timeout=30,
                           headers={"Authorization": f"Token {server.legacy_token}"})
    assert answer.json()["data"]["activeft_rank"] == 1

    # Running it again changes nothing and duplicates nothing.
    again = run(server, args, key="personal")
    assert "0 tasks imported" in again.output
    assert sorted(t.id for t in all_tasks(client, project.id)) == sorted(t.id for t in tasks)
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids


def test_setup_local_files_with_legacy_token(server, client, pool_dir, expected, tmp_path):
    _, _, ranked_ids = expected
    title = "Setup local files"
    out = tmp_path / "selection.csv"
    result = run(server, ["labelstudio", "setup", str(pool_dir), "-t", title, "-l", "cat,dog", "--task", "detection",
                          "-b", str(BUDGET), "--document-root", server.local_files_root, "--out", str(out), "-q"],
                 key="legacy")
    assert "local-files" in result.output
    project = project_by_title(client, title)
    assert "<RectangleLabels" in project.label_config
    listed = ranked(client, project.id)
    assert [t.data["activeft_id"] for t in listed] == ranked_ids
    for task in listed:
        assert task.data["image"].startswith("/data/local-files/?d=pool/")
        source = pool_dir / task.data["activeft_id"]
        assert fetch(server, task.data["image"], server.legacy_token) == source.read_bytes()
    with open(out) as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ranked_ids


def test_setup_existing_title_with_other_labels_is_refused(server, pool_dir):
    run(server, ["labelstudio", "setup", str(pool_dir), "-t", "Setup upload", "-l", "x,y", "-b", "3", "-q",
                 "--images", "upload"], expect=2)


# --------------------------------------------------------------------------------------------------------------
# select on an existing project


def test_select_in_place(server, client, user_project, tmp_path):
    pid = user_project["id"]
    before = sorted(t.id for t in all_tasks(client, pid))
    out = tmp_path / "picks.csv"
    result = run(server, ["labelstudio", "select", "--project", str(pid), "--budget", "10", "--predictions",
                          "--out", str(out), "--quiet"], key="personal")
    # Broken references and the task without an image field are skipped and reported.
    assert f"Skipped {len(user_project['broken'])}" in result.stderr
    for task_id in user_project["broken"][:5]:  # the first five are listed
        assert f"task {task_id}:" in result.stderr
    assert "HTTP 404" in result.stderr

    tasks = {t.id: t for t in all_tasks(client, pid)}
    assert sorted(tasks) == before
    chosen = {tid: t.data["activeft_rank"] for tid, t in tasks.items() if "activeft_rank" in t.data}
    assert sorted(chosen.values()) == list(range(1, 11))
    assert not set(chosen) & set(user_project["broken"])
    assert not set(chosen) & set(user_project["annotated"])
    listed = ranked(client, pid)
    assert [t.data["activeft_rank"] for t in listed] == list(range(1, 11))
    assert all(t.data["activeft_id"] == f"labelstudio:{pid}/{t.id}" for t in listed)
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [t.data["activeft_id"] for t in listed]

    # Predictions for "Uncertainty sampling": lowest score = rank 1.
    predictions = [p for p in client.predictions.list(project=pid) if p.model_version == "activeft"]
    assert len(predictions) == 10
    scores = {p.task: p.score for p in predictions}
    assert [scores[t.id] for t in listed] == sorted(scores.values())
    assert client.projects.get(id=pid).model_version == "activeft"

    # Again with a smaller budget: ranks and predictions follow, nothing is duplicated.
    run(server, ["labelstudio", "select", "-p", str(pid), "-b", "6", "--predictions", "-q"], key="legacy")
    tasks = all_tasks(client, pid)
    assert sorted(t.id for t in tasks) == before
    assert sorted(t.data["activeft_rank"] for t in tasks if "activeft_rank" in t.data) == list(range(1, 7))
    assert [t.data["activeft_rank"] for t in ranked(client, pid)] == list(range(1, 7))
    assert len([p for p in client.predictions.list(project=pid) if p.model_version == "activeft"]) == 6


def test_select_within_a_view(server, client, user_project):
    pid = user_project["id"]
    subset = user_project["tasks"][2:12]  # uploaded images, none annotated
    view = client.views.create(project=pid, data={"title": "Subset", "filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:id", "operator": "in", "type": "Number",
         "value": {"min": subset[0], "max": subset[-1]}}]}})
    run(server, ["labelstudio", "select", "-p", str(pid), "--view", str(view.id), "-b", "4", "-q"])
    chosen = [t.id for t in all_tasks(client, pid) if "activeft_rank" in t.data]
    assert len(chosen) == 4 and set(chosen) <= set(subset)
    run(server, ["labelstudio", "select", "-p", str(pid), "--view", "987654", "-b", "4", "-q"], expect=2)


def test_select_into_new_project(server, client, user_project):
    pid = user_project["id"]
    args = ["labelstudio", "select", "-p", str(pid), "-b", "8", "--mode", "project", "--title", "Round two", "-q"]
    run(server, args)
    target = project_by_title(client, "Round two")
    assert target.sampling == "Sequential sampling"
    tasks = all_tasks(client, target.id)
    assert len(tasks) == 8
    by_id = sorted(tasks, key=lambda t: t.id)
    assert [t.data["activeft_rank"] for t in by_id] == list(range(1, 9))  # imported in rank order
    assert [t.data["activeft_rank"] for t in ranked(client, target.id)] == list(range(1, 9))
    for task in tasks:
        source = int(task.data["activeft_id"].rsplit("/", 1)[1])
        assert source not in user_project["annotated"] + user_project["broken"]
        assert fetch(server, task.data["image"], server.legacy_token)[:4] == b"\x89PNG"
    run(server, args)
    assert sorted(t.id for t in all_tasks(client, target.id)) == sorted(t.id for t in tasks)


def test_select_into_a_project_that_is_not_a_copy_of_the_source_is_refused(server, client, user_project):
    pid = user_project["id"]
    other_config = client.projects.create(title="Hand made, text", label_config=(
        '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="x"/></Choices></View>'))
    same_config = client.projects.create(title="Hand made, same config", label_config=CONFIG)
    client.projects.import_tasks(id=same_config.id, request=[{"image": "/data/upload/1/someone-elses.png"}])
    before = {p: sorted((t.id, json.dumps(t.data, sort_keys=True)) for t in all_tasks(client, p))
              for p in (other_config.id, same_config.id)}
    for title, message in (("Hand made, text", "another label config"),
                           ("Hand made, same config", "not copies of project")):
        result = run(server, ["labelstudio", "select", "-p", str(pid), "-b", "3", "--mode", "project", "--title",
                              title, "-q"], expect=2)
        assert message in result.text and "choose another --title" in result.text
    after = {p: sorted((t.id, json.dumps(t.data, sort_keys=True)) for t in all_tasks(client, p))
             for p in (other_config.id, same_config.id)}
    assert after == before


def test_setup_local_files_outside_the_root_creates_nothing(server, pool_dir, tmp_path):
    conn = ls.connect(server.url, server.legacy_token)
    outside = tmp_path / "outside"
    outside.mkdir()
    for k, path in enumerate(sorted(pool_dir.rglob("*.png"))[:6]):
        (outside / f"o{k}.png").write_bytes(path.read_bytes())
    cases = (("Outside the root", server.local_files_root, "is not under the local-files document root"),
             ("Root that is missing", str(tmp_path / "missing"), "is not a folder"))
    for title, root, message in cases:
        result = run(server, ["labelstudio", "setup", str(outside), "-t", title, "-l", "a,b", "-b", "2",
                              "--iters", "20", "--images", "local-files", "--document-root", root, "-q"], expect=2)
        assert message in result.text
        assert not ls.find_project(conn, title)


# --------------------------------------------------------------------------------------------------------------
# Bad input


def test_unreachable_server_fails_fast(server):
    start = time.monotonic()
    result = run(server, ["labelstudio", "select", "-p", "1", "-b", "3", "-q"], expect=1,
                 env={"LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}"})
    assert time.monotonic() - start < 10
    assert "cannot reach Label Studio" in result.text and "--url" in result.text


def _forged_jwt():
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    payload = {"token_type": "refresh", "exp": int(time.time()) + 10**6, "iat": int(time.time()), "jti": "f" * 32,
               "user_id": "1"}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.{'A' * 43}"


@pytest.mark.parametrize("bad_key", ["0123456789abcdef0123456789abcdef01234567", _forged_jwt()],
                         ids=["legacy-form", "personal-form"])
def test_wrong_key_names_the_token_kinds(server, bad_key):
    result = run(server, ["labelstudio", "select", "-p", "1", "-b", "3", "-q"], key=None, expect=2,
                 env={"LABEL_STUDIO_API_KEY": bad_key})
    assert "401" in result.text
    assert "personal access token" in result.text and "legacy token" in result.text
    assert bad_key not in result.text


def test_missing_url_or_key(server):
    result = run(server, ["labelstudio", "select", "-p", "1", "-b", "3"], expect=2, env={"LABEL_STUDIO_URL": None})
    assert "--url" in result.text
    result = run(server, ["labelstudio", "select", "-p", "1", "-b", "3"], key=None, expect=2)
    assert "--api-key" in result.text
    for url, message in (("localhost:8080", "must start with http:// or https://"), ("http://", "names no host")):
        result = run(server, ["labelstudio", "select", "-p", "1", "-b", "3"], expect=2, env={"LABEL_STUDIO_URL": url})
        assert message in result.text


def test_unknown_project(server):
    result = run(server, ["labelstudio", "select", "-p", "99999", "-b", "3", "-q"], expect=2)
    assert "no project 99999" in result.text


def test_tasks_without_image_field(server, client):
    project = client.projects.create(title="No images", label_config=CONFIG)
    ids = client.projects.import_tasks(id=project.id, request=[{"image": "x"}, {"image": "y"}],
                                       return_task_ids=True).task_ids
    for task_id in ids:
        client.tasks.update(id=str(task_id), data={"caption": "no image"})
    result = run(server, ["labelstudio", "select", "-p", str(project.id), "-b", "1", "-q"], expect=2)
    assert "none of the 2 tasks" in result.text and "--image-field" in result.text

    text_only = client.projects.create(title="Text only", label_config='<View><Text name="t" value="$text"/></View>')
    client.projects.import_tasks(id=text_only.id, request=[{"text": "hello"}])
    result = run(server, ["labelstudio", "select", "-p", str(text_only.id), "-b", "1", "-q"], expect=2)
    assert "<Image>" in result.text and "--image-field" in result.text


def test_all_images_broken(server, client, web_server):
    project = client.projects.create(title="Broken images", label_config=CONFIG)
    client.projects.import_tasks(id=project.id, request=[{"image": f"{web_server}/missing.png"},
                                                         {"image": f"{web_server}/notes.txt"}])
    result = run(server, ["labelstudio", "select", "-p", str(project.id), "-b", "1", "-q"], expect=2)
    assert "could be read" in result.text and "HTTP 404" in result.text


def test_budget_larger_than_project_writes_nothing(server, client, user_project):
    pid = user_project["id"]
    snapshot = {t.id: dict(t.data) for t in all_tasks(client, pid)}
    views = sorted(v.id for v in client.views.list(project=pid))
    result = run(server, ["labelstudio", "select", "-p", str(pid), "-b", "500", "-q"], expect=2)
    assert "larger than" in result.text and f"project {pid}" in result.text
    assert {t.id: dict(t.data) for t in all_tasks(client, pid)} == snapshot
    assert sorted(v.id for v in client.views.list(project=pid)) == views


def test_setup_bad_input(server, pool_dir):
    result = run(server, ["labelstudio", "setup", "fiftyone:my-dataset", "-t", "From FO", "-l", "a", "-b", "3"],
                 expect=2)
    assert "activeft sync push" in result.text
    result = run(server, ["labelstudio", "setup", str(pool_dir), "-t", "Bad labels", "-l", "a,,b", "-b", "3"],
                 expect=2)
    assert "--labels" in result.text
    result = run(server, ["labelstudio", "setup", str(pool_dir), "-t", "ab", "-l", "a", "-b", "3"], expect=2)
    assert "at least 3 characters" in result.text
    long_title = "A title longer than the fifty characters Label Studio takes"
    result = run(server, ["labelstudio", "setup", str(pool_dir), "-t", long_title, "-l", "a", "-b", "3"], expect=2)
    assert "at most 50" in result.text and result.elapsed < 20          # refused before the embedding
    result = run(server, ["labelstudio", "setup", str(pool_dir / "nope"), "-t", "Nope", "-l", "a", "-b", "3"],
                 expect=2)
    assert "does not exist" in result.text
    result = run(server, ["labelstudio", "setup", str(pool_dir), "-t", "Too many", "-l", "a", "-b", "31", "-q"],
                 expect=2)
    assert "larger than" in result.text
    assert not [p for p in ls.find_project(ls.connect(server.url, server.legacy_token), "Too many")]


# --------------------------------------------------------------------------------------------------------------
# Transient failures and resuming, through a real proxy that misbehaves


class FlakyProxy:
    """An HTTP proxy in front of the server; ``rule(method, path, count)`` decides per request.

    The rule returns ``"pass"``, ``"reset"`` (close the connection without an
    answer, before forwarding), ``"502-after"`` (forward, then answer 502:
    the server did the work but the client does not know), ``"503"`` or
    ``"hold"`` (forward nothing and answer nothing until the proxy stops: the
    client waits; ``held`` is set meanwhile).
    ``count`` numbers the requests with the same method and path (1-based).
    """

    def __init__(self, upstream, rule):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rule = rule
        self.counts = {}
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                path = urllib.parse.urlsplit(self.path).path
                with proxy.lock:
                    key = (self.command, path)
                    proxy.counts[key] = proxy.counts.get(key, 0) + 1
                    action = proxy.rule(self.command, path, proxy.counts[key])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "503":
                    self._answer(503, {"Content-Type": "text/plain"}, b"unavailable")
                    return
                if action == "hold":
                    proxy.held.set()
                    proxy.release.wait(300)
                    self.close_connection = True
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                upstream.close()
                if action == "502-after":
                    self._answer(502, {"Content-Type": "text/plain"}, b"bad gateway")
                    return
                kept = {k: v for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                self._answer(response.status, kept, payload)

            def _answer(self, status, headers, payload):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _is_import(method, path):
    return method == "POST" and path.rstrip("/").endswith("/import")


def test_transient_failures_are_retried_without_duplicates(server, client, pool_dir, expected):
    pool, result, ranked_ids = expected
    project = client.projects.create(title="Flaky network", label_config=CONFIG)

    def rule(method, path, count):
        if _is_import(method, path) and count <= 2:
            return "502-after"  # the first two batches reach the server, but their answers are lost
        if method == "PATCH" and count == 1:
            return "reset"
        if method == "GET" and path.endswith("/views/") and count == 1:
            return "503"
        return "pass"

    items = [{"id": pool.ids[row], "rank": rank, "data": {"image": f"/data/local-files/?d=pool/{pool.ids[row]}"}}
             for rank, row in enumerate(result.ranked_indices, start=1)]
    with FlakyProxy(server.url, rule) as proxy:
        conn = ls.connect(proxy.url, server.personal_token, backoff=0.05)
        report = ls.push_project(conn, project.id, items, batch_size=5, progress=False)
        conn.close()
    assert report.created == BUDGET
    tasks = all_tasks(client, project.id)
    assert len(tasks) == BUDGET
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids
    # Re-ranking goes through PATCH (the first one is dropped and retried).
    items = [dict(item, rank=BUDGET + 1 - item["rank"]) for item in items]
    with FlakyProxy(server.url, rule) as proxy:
        conn = ls.connect(proxy.url, server.personal_token, backoff=0.05)
        report = ls.push_project(conn, project.id, items, progress=False)
        conn.close()
    assert report.created == 0 and report.updated == BUDGET
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids[::-1]


def test_interrupted_setup_is_completed_by_the_next_run(server, client, expected, monkeypatch):
    pool, result, ranked_ids = expected
    monkeypatch.setattr(ls.client, "UPLOAD_BATCH", 5)   # read when connecting
    title = "Interrupted setup"

    def rule(method, path, count):
        # The first chunk is uploaded and imported, the second uploaded; then the server "dies" for imports.
        return "503" if _is_import(method, path) and count >= 4 else "pass"

    with FlakyProxy(server.url, rule) as proxy:
        conn = ls.connect(proxy.url, server.legacy_token, retries=2, backoff=0.05)
        with pytest.raises(ActiveFTError, match="running the command again resumes"):
            ls.setup_project(conn, title, "a,b", pool, result, images="upload", progress=False)
        conn.close()
    project = project_by_title(client, title)
    assert len(all_tasks(client, project.id)) == 5  # the first chunk only

    conn = ls.connect(server.url, server.legacy_token)
    report = ls.setup_project(conn, title, "a,b", pool, result, images="upload", progress=False)
    conn.close()
    assert report.created == BUDGET - 5 and report.unchanged == 5
    tasks = all_tasks(client, project.id)
    assert len(tasks) == BUDGET
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids
    for task in tasks:
        assert fetch(server, task.data["image"], server.legacy_token)[:4] == b"\x89PNG"


def test_upload_requests_shrink_when_the_server_refuses_that_many_files(server, client, pool_dir):
    project = client.projects.create(title="Many files", label_config=CONFIG)
    paths = [str(p) for p in sorted(pool_dir.rglob("*.png"))] * 4  # 120 files; the server takes 100 per request
    conn = ls.connect(server.url, server.legacy_token)
    conn.upload_batch = len(paths)
    urls = ls.upload_images(conn, project.id, paths, progress=False)
    conn.close()
    assert conn.upload_batch == 60
    assert len(urls) == len(set(urls)) == 120
    assert fetch(server, urls[-1], server.legacy_token) == Path(paths[-1]).read_bytes()


# --------------------------------------------------------------------------------------------------------------
# Connector details


def test_connection_reports_token_kind_and_never_shows_the_key(server):
    for key, kind in ((server.personal_token, "personal"), (server.legacy_token, "legacy")):
        conn = ls.connect(server.url, key)
        assert conn.token_kind == kind and conn.user == server.email
        assert key not in repr(conn) and key not in conn.scrub(f"x {key} y")
        conn.close()


def test_label_config_and_labels():
    import xml.etree.ElementTree as ET

    names = ["cat", 'say "hi"', "a&b", "<x>"]
    root = ET.fromstring(ls.label_config(names, "classification"))
    assert [c.get("value") for c in root.iter("Choice")] == names
    assert root.find("Image").get("value") == "$image"
    assert "<RectangleLabels" in ls.label_config("a,b", "detection")
    with pytest.raises(InputError):
        ls.parse_labels("a,a")
    with pytest.raises(InputError):
        ls.label_config("a", "segmentation")
    assert ls.image_field('<View><Image name="x" value="$photo"/></View>') == "photo"


def test_help_reads_and_sdk_is_imported_lazily():
    result = CliRunner().invoke(main, ["labelstudio", "setup", "--help"])
    assert result.exit_code == 0 and "SOURCE" in result.output and "LABEL_STUDIO_API_KEY" in result.output
    result = CliRunner().invoke(main, ["labelstudio", "select", "--help"])
    assert result.exit_code == 0 and "--mode" in result.output
    import subprocess
    import sys

    code = "import sys, activeft_label.cli; print('label_studio_sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------------------------------------------
# Issue 24: uploads left by an interrupted run, the recorded selection, the annotations read, the view's columns


def _uploads(server, pid):
    """Every file uploaded to a project (id, file, size), as Label Studio lists them."""
    answer = httpx.get(f"{server.url}/api/projects/{pid}/file-uploads", params={"all": "true"}, timeout=30,
                       headers={"Authorization": f"Token {server.legacy_token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _referenced(client, pid):
    """The uploads (``upload/...``) that the tasks of a project reference."""
    return {t.data["image"].split("/data/", 1)[1] for t in all_tasks(client, pid) if "image" in t.data}


def _uploads_per_image(server, pid, paths):
    """{image path: number of the project's uploads that are that file (same stored name and same bytes)}."""
    uploads = _uploads(server, pid)
    contents = {u["file"]: fetch(server, "/data/" + u["file"], server.legacy_token) for u in uploads}
    counts = {}
    for path in paths:
        name, content = ls.stored_file_name(str(path)), Path(path).read_bytes()
        counts[str(path)] = sum(1 for f, data in contents.items()
                                if os.path.basename(f)[9:] == name and data == content)
    return counts


def _cli_environment(server):
    environment = dict(os.environ)  # ACTIVEFT_CACHE_DIR: this test's own (tests/conftest.py)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    environment.update({"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.personal_token,
                        "OMP_NUM_THREADS": "1",
                        "PYTHONPATH": os.pathsep.join([root, environment.get("PYTHONPATH", "")])})
    return environment


def test_setup_killed_between_upload_and_import_reuses_its_uploads(server, client, pool_dir):
    """SIGKILL a real `activeft labelstudio setup` while uploaded files wait for their tasks; the re-run reuses them.

    The child talks to the server through a real proxy that holds its third task import (the server got two
    chunks of tasks and three chunks of images), so the kill lands where the files are on the server and their
    tasks are not; polling for that moment, as the sync kill test does, races the child.
    """
    import signal
    import subprocess
    import sys

    title, budget = "Killed setup", 20
    args = ["labelstudio", "setup", str(pool_dir), "-t", title, "-l", "a,b", "-b", str(budget), "--iters", "20",
            "--images", "upload", "--import-batch", "2", "-q"]

    def rule(method, path, count):
        # POSTs to /import alternate: upload (multipart), then the import of those tasks; hold the third import.
        return "hold" if _is_import(method, path) and count == 6 else "pass"

    with FlakyProxy(server.url, rule) as proxy:
        environment = {**_cli_environment(server), "LABEL_STUDIO_URL": proxy.url}
        child = subprocess.Popen([sys.executable, "-m", "activeft_label.cli", *args], env=environment,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proxy.held.wait(300), f"the setup never reached its third import: {child.communicate()}"
            time.sleep(0.2)
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(30)
    project = project_by_title(client, title)
    orphans = {u["file"] for u in _uploads(server, project.id)} - _referenced(client, project.id)
    assert len(all_tasks(client, project.id)) == 4 and len(orphans) == 2
    assert len(_uploads(server, project.id)) == 6

    again = run(server, args)  # the same command, straight to the server, same cache folder
    assert "Reused the selection" in again.text and "the optimizer did not run" in again.text
    assert "16 tasks imported" in again.text and "14 images uploaded, 2 uploaded by an interrupted run reused" in \
        again.text
    tasks = all_tasks(client, project.id)
    assert len(tasks) == budget
    assert _referenced(client, project.id) == {u["file"] for u in _uploads(server, project.id)}  # nothing unused
    assert orphans <= _referenced(client, project.id)
    for task in tasks:
        source = pool_dir / task.data["activeft_id"]
        assert fetch(server, task.data["image"], server.legacy_token) == source.read_bytes()
    counts = _uploads_per_image(server, project.id, [pool_dir / t.data["activeft_id"] for t in tasks])
    assert set(counts.values()) == {1}, counts  # the server holds each image once
    assert [t.data["activeft_rank"] for t in ranked(client, project.id)] == list(range(1, budget + 1))


def test_an_upload_whose_answer_was_lost_is_not_stored_twice(server, client, expected, monkeypatch):
    pool, result, ranked_ids = expected
    monkeypatch.setattr(ls.client, "UPLOAD_BATCH", 5)   # read when connecting
    title = "Lost upload answer"

    def rule(method, path, count):
        # The first upload reaches the server, which stores its files; its answer is lost.
        return "502-after" if _is_import(method, path) and count == 1 else "pass"

    with FlakyProxy(server.url, rule) as proxy:
        conn = ls.connect(proxy.url, server.legacy_token, backoff=0.05)
        report = ls.setup_project(conn, title, "a,b", pool, result, images="upload", progress=False)
        conn.close()
    assert report.created == BUDGET and report.reused_uploads == 5 and report.uploaded == BUDGET - 5
    project = project_by_title(client, title)
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids
    assert len(_uploads(server, project.id)) == BUDGET
    counts = _uploads_per_image(server, project.id, [pool.paths[pool.ids.index(i)] for i in ranked_ids])
    assert set(counts.values()) == {1}, counts


def test_unused_uploads_are_reused_only_for_the_same_bytes(server, client, pool_dir, tmp_path):
    """Same name and size but other bytes is another file; a file is reused once."""
    project = client.projects.create(title="Same name, other bytes", label_config=CONFIG)
    source = sorted(pool_dir.rglob("*.png"))[0]
    first, second = tmp_path / "a" / "same.png", tmp_path / "b" / "same.png"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_bytes(source.read_bytes())
    data = bytearray(source.read_bytes())
    data[-5] ^= 0xFF  # same size, one byte differs
    second.write_bytes(bytes(data))
    conn = ls.connect(server.url, server.legacy_token)
    [url] = ls.upload_images(conn, project.id, [str(first)], progress=False)  # no task uses it: unused
    urls = ls.upload_images(conn, project.id, [str(second), str(first), str(first)], progress=False)
    conn.close()
    assert urls[1] == url and urls[0] != url and urls[2] not in (url, urls[0])
    assert fetch(server, urls[0], server.legacy_token) == second.read_bytes()
    assert len(_uploads(server, project.id)) == 3


def test_setup_again_with_the_same_inputs_reuses_the_recorded_selection(server, client, pool_dir, expected):
    _, _, ranked_ids = expected
    title = "Setup twice"

    def setup(budget=BUDGET, *extra):
        return ["labelstudio", "setup", str(pool_dir), "-t", title, "-l", "a,b", "-b", str(budget), "--images",
                "upload", "-q", *extra]

    args = setup()
    first = run(server, args)
    assert "Selected 12 of 30 images" in first.text and "Reused" not in first.text
    project = project_by_title(client, title)

    def state():
        tasks = {t.id: (json.dumps(t.data, sort_keys=True), str(t.updated_at)) for t in all_tasks(client, project.id)}
        views = {v.id: json.dumps(v.data, sort_keys=True) for v in client.views.list(project=project.id)}
        return tasks, views, sorted(u["id"] for u in _uploads(server, project.id))

    before = state()
    second = run(server, args)
    assert "Reused the selection of 12 of 30 images" in second.text and "the optimizer did not run" in second.text
    assert "Selected" not in second.text
    assert "0 tasks imported" in second.text and "0 updated, 12 unchanged, 0 earlier ranks cleared" in second.text
    assert state() == before  # no task, view or upload changed
    assert [t.data["activeft_id"] for t in ranked(client, project.id)] == ranked_ids
    records = list(Path(os.environ["ACTIVEFT_CACHE_DIR"], "labelstudio", "selections").glob("*.json"))
    assert len(records) == 1 and records[0].name in second.text

    # A changed input selects again: another budget, another option.
    third = run(server, setup(10))
    assert "Selected 10 of 30 images" in third.text and "Reused" not in third.text
    assert sorted(t.data["activeft_rank"] for t in all_tasks(client, project.id) if "activeft_rank" in t.data) == \
        list(range(1, 11))
    fourth = run(server, setup(BUDGET, "--seed", "3"))
    assert "Selected 12 of 30 images" in fourth.text and "Reused" not in fourth.text
    assert len(list(records[0].parent.glob("*.json"))) == 3


def _displayed_columns(server, pid, hidden):
    """The Data Manager's list columns, left to right, as its front end orders them (label-studio 1.23).

    The front end takes the columns of ``/api/dm/columns`` that have no parent, in their order, and puts each
    group's children where the group is (``fieldsAsColumns``); the task data are the children of the "data"
    group, which the server lists last.  Ids: ``tasks:<id>`` and ``tasks:data.<key>``.
    """
    answer = httpx.get(f"{server.url}/api/dm/columns/", params={"project": pid}, timeout=30,
                       headers={"Authorization": f"Token {server.legacy_token}"})
    columns = answer.json()["columns"]
    order = []
    for column in columns:
        if column.get("parent"):
            continue
        if column.get("children"):
            order += [f"tasks:{column['id']}.{child}" for child in column["children"]]
        else:
            order.append(f"tasks:{column['id']}")
    return [key for key in order if key not in hidden]


def test_priority_view_shows_the_image_and_the_rank_first(server, client, pool_dir, user_project):
    title = "Columns"
    run(server, ["labelstudio", "setup", str(pool_dir), "-t", title, "-l", "a,b", "-b", "5", "--iters", "20",
                 "--document-root", server.local_files_root, "-q"])
    for pid in (project_by_title(client, title).id, user_project["id"]):
        if pid == user_project["id"]:
            run(server, ["labelstudio", "select", "-p", str(pid), "-b", "4", "-q"])
        data = priority_view(client, pid).data
        hidden = data["hiddenColumns"]
        assert sorted(hidden["explore"]) == sorted(hidden["labeling"])
        for noise in ("tasks:id", "tasks:completed_at", "tasks:total_annotations", "tasks:cancelled_annotations",
                      "tasks:total_predictions", "tasks:annotators", "tasks:data.activeft_id"):
            assert noise in hidden["explore"], noise
        shown = _displayed_columns(server, pid, set(hidden["explore"]))
        assert shown == ["tasks:data.image", "tasks:data.activeft_rank"], shown
        assert data["ordering"] == ["tasks:data.activeft_rank"]
        assert data["columnsDisplayType"] == {"tasks:data.activeft_rank": "Number"}
        # The view still lists the ranked tasks only, by rank.
        assert [t.data["activeft_rank"] for t in ranked(client, pid)] == list(range(1, len(ranked(client, pid)) + 1))


def test_annotations_are_read_from_the_task_list_as_the_export_gives_them(server, client, pool_dir):
    project = client.projects.create(title="Annotations read", label_config=CONFIG)
    ids = client.projects.import_tasks(id=project.id, request=[{"image": f"/data/local-files/?d=pool/x{k}.png",
                                                                 "activeft_id": f"x{k}"} for k in range(7)],
                                       return_task_ids=True).task_ids

    def choose(task_id, choice, cancelled=False):
        result = [] if cancelled else [{"from_name": "label", "to_name": "image", "type": "choices",
                                        "value": {"choices": [choice]}}]
        client.annotations.create(id=task_id, result=result, was_cancelled=cancelled)

    choose(ids[0], "a")
    choose(ids[1], "a")
    choose(ids[1], "b")            # two annotations: the latest counts
    choose(ids[2], None, cancelled=True)
    choose(ids[3], "b")
    choose(ids[3], None, cancelled=True)
    conn = ls.connect(server.url, server.personal_token)
    exported = {t["id"]: t for t in ls.export_tasks(conn, project.id, via="export")}
    for page_size in (ls.ANNOTATION_PAGE_SIZE, 2):  # one page, and four
        listed = ls.export_tasks(conn, project.id, page_size=page_size)
        assert [t["id"] for t in listed] == sorted(ids)
        for task in listed:
            old = exported[task["id"]]
            assert task["data"] == old["data"]
            keep = ("id", "result", "was_cancelled", "created_at", "updated_at")
            assert sorted(task["annotations"], key=lambda a: a["id"]) == \
                sorted(({k: a[k] for k in keep} for a in old["annotations"]), key=lambda a: a["id"])
    control = ls.label_controls(CONFIG)[0]
    new = ls.read_annotations(conn, project.id, control)
    old = ls.read_annotations(conn, project.id, control, tasks=list(exported.values()))
    conn.close()
    assert sorted(new, key=lambda r: r.task_id) == sorted(old, key=lambda r: r.task_id)
    by_task = {r.task_id: r for r in new}
    assert sorted(by_task) == sorted(ids[:4])
    assert by_task[ids[1]].choices == ["b"] and by_task[ids[1]].annotations == 2
    assert by_task[ids[2]].annotation_id is None and by_task[ids[2]].cancelled == 1
    assert by_task[ids[3]].choices == ["b"] and by_task[ids[3]].cancelled == 1
