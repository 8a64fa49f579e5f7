"""The ActiveFT ML backend against a real Label Studio server, as a real process.

One Label Studio server for the module (``labelstudio_server.py``, with ML
backends and webhooks on 127.0.0.1 allowed: ``ML_BLOCK_LOCAL_IP=false``,
``SSRF_PROTECTION_ENABLED=false``), and the backend started as users start
it, ``python -m activeft_label.cli labelstudio serve ...``, in a process
group of its own, stopped (or killed) by its PID.  Projects hold real PNG
images (Fashion-MNIST, else scikit-learn digits) written here and served
from local-files storage; the backend embeds them with the offline
EfficientNet-Lite0 encoder.  Both the backend and this test run torch on one
thread, so the backend's selection can be compared with one computed here
from the same files.  Nothing of Label Studio is mocked: predictions arrive
through "Retrieve predictions" (the Data Manager action) and the backend's
own imports, annotations through the API, re-ranks through Label Studio's
webhooks.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("label_studio_sdk")
pytest.importorskip("label_studio")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from activeft_label.backend.ranker import project_uid  # noqa: E402
from activeft_label.backend.state import load_ranking, state_folder  # noqa: E402
from activeft_label.cli import main  # noqa: E402
from activeft_label.files.demo import demo_images  # noqa: E402

from labelstudio_server import LabelStudioServer, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 8
#: ActiveFT steps: enough that a re-rank of 30 images lasts a few seconds (the test kills one half-way).
ITERS = 3000
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BackendLabelStudio(LabelStudioServer):
    """A test server that lets projects connect ML backends (and their webhooks) on 127.0.0.1."""

    def environment(self):
        env = super().environment()
        env.update(ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false")
        return env


class BackendProcess:
    """``activeft labelstudio serve`` in a process group of its own, stopped by PID."""

    def __init__(self, server, base, key, port=None, extra=()):
        self.server, self.base, self.key = server, Path(base), key
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = self.base / "state"
        self.log_path = self.base / "backend.log"
        self.extra = list(extra)
        self.process = None

    def start(self, timeout=120):
        self.base.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("LABEL_STUDIO_", "ACTIVEFT_", "BASIC_AUTH_"))}
        env.update(LABEL_STUDIO_URL=self.server.url, LABEL_STUDIO_API_KEY=self.key, HF_HUB_OFFLINE="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ACTIVEFT_CACHE_DIR=str(self.base / "cache"),
                   PYTHONPATH=str(ROOT))
        command = [sys.executable, "-m", "activeft_label.cli", "labelstudio", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--budget", str(BUDGET), "--iters", str(ITERS), "--debounce", "1",
                   "--state-dir", str(self.state_dir), *self.extra]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the backend exited:\n{self.log()}"
            try:
                httpx.get(self.url + "/health", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"the backend did not answer within {timeout} s:\n{self.log()}")

    def health(self):
        answer = httpx.get(self.url + "/health", timeout=5)
        return answer.status_code, answer.json()

    def project(self, project_id):
        return self.health()[1]["projects"].get(str(project_id)) or {}

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig):
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)  # the group the backend leads (start_new_session)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        self.process.wait(20)

    def stop(self):
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


def wait_for(what, predicate, backend=None, timeout=120, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    log = backend.log()[-4000:] if backend else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = BackendLabelStudio(tmp_path_factory.mktemp("ls-ml"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.legacy_token)


@pytest.fixture(scope="module")
def pool(server):
    """30 real PNG files under the server's local-files root, in task order."""
    from PIL import Image

    images, _, _, _ = demo_images(30, seed=2)
    folder = Path(server.local_files_root) / "pool"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        path = folder / f"img{k:02d}.png"
        Image.fromarray(image, mode="L").resize((56, 56)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def features(pool):
    """The pool's features as the backend computes them (same encoder, same files, one thread, one batch)."""
    from activeft_label.embeddings import embed_images

    return embed_images([str(p) for p in pool], cache_dir=False, progress=False).features


def expected_ranking(features, task_ids, fixed_tasks=()):
    """Task ids of the selection the backend must make, rank 1 first."""
    from activeft_label.selection import select

    rows = {task: row for row, task in enumerate(task_ids)}
    fixed = [rows[t] for t in fixed_tasks] or None
    result = select(features, BUDGET, iterations=ITERS, fixed=fixed)
    return [task_ids[int(row)] for row in result.ranked_indices]


def make_project(server, client, title, paths, extra_tasks=(), config=CONFIG):
    project = client.projects.create(title=title, label_config=config)
    if paths:
        client.import_storage.local.create(project=project.id, path=str(Path(paths[0]).parent),
                                           use_blob_urls=True, title="pool")
    tasks = [{"image": "/data/local-files/?d=" + urllib.parse.quote(os.path.relpath(p, server.local_files_root))}
             for p in paths] + list(extra_tasks)
    imported = client.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    return project.id, list(imported.task_ids)


@pytest.fixture(scope="module")
def backend(server, tmp_path_factory):
    process = BackendProcess(server, tmp_path_factory.mktemp("backend"), server.personal_token).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def project_a(server, client, pool):
    return make_project(server, client, "Backend A", pool)


def cli(server, args, expect=0):
    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.personal_token}
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == expect, result.output
    assert server.personal_token not in result.output and "Traceback" not in result.output
    return result.output


def predictions_of(client, pid):
    """{task id: [(model version, score)]} of every prediction of the project."""
    found = {}
    for prediction in client.predictions.list(project=pid):
        found.setdefault(prediction.task, []).append((prediction.model_version, prediction.score))
    return found


def published(backend, pid, other_than=None):
    entry = backend.project(pid)
    ready = entry.get("status") == "ready" and entry.get("published") and backend.health()[1]["busy"] is None
    if ready and entry.get("model_version") not in (None, other_than):
        return entry
    return None


def one_prediction_each(client, pid, task_ids, version):
    found = predictions_of(client, pid)
    return sorted(found) == sorted(task_ids) and all(len(v) == 1 and v[0][0] == version for v in found.values())


def dm_action(server, pid, action, task_ids):
    answer = httpx.post(f"{server.url}/api/dm/actions", params={"id": action, "project": pid},
                        json={"selectedItems": {"all": False, "included": list(task_ids)}},
                        headers={"Authorization": f"Token {server.legacy_token}"}, timeout=180)
    assert answer.status_code == 200, answer.text
    return answer.json()


def priority_view(client, pid):
    """Task ids of the "ActiveFT priority" view, in its order."""
    views = [v for v in client.views.list(project=pid) if (v.data or {}).get("title") == "ActiveFT priority"]
    assert len(views) == 1
    return [t.id for t in client.tasks.list(project=pid, view=views[0].id, fields="task_only")]


def by_prediction_score(client, pid):
    """Task ids in the order of a Data Manager view sorted by "Prediction score" (ascending)."""
    view = client.views.create(project=pid, data={"title": "By score", "ordering": ["tasks:predictions_score"]})
    try:
        return [t.id for t in client.tasks.list(project=pid, view=view.id, fields="task_only")]
    finally:
        client.views.delete(id=str(view.id))


# --------------------------------------------------------------------------------------------------------------
# The queue: connect, retrieve, annotate, re-rank, restart


def test_connect_ranks_the_project_and_retrieve_predictions_answers_from_the_ranking(
        server, client, backend, project_a, features):
    pid, tasks = project_a
    started = time.monotonic()
    out = cli(server, ["labelstudio", "connect", "--project", str(pid), "--backend-url", backend.url])
    assert f"Connected project {pid}" in out
    assert "Already connected" in cli(server, ["labelstudio", "connect", "-p", str(pid), "--backend-url",
                                               backend.url])
    assert len(client.ml.list(project=pid)) == 1

    entry = wait_for("the first ranking", lambda: published(backend, pid), backend)
    seconds = time.monotonic() - started
    version = entry["model_version"]
    assert version.startswith("activeft-1-")
    want = expected_ranking(features, tasks)
    assert entry["ranked"] == want
    # The backend's own imports: one prediction per task, with its version, and the project uses it.
    wait_for("the predictions", lambda: one_prediction_each(client, pid, tasks, version), backend, timeout=30)
    assert client.projects.get(id=pid).model_version == version

    # "Retrieve predictions" for every task, as the Data Manager sends it, after deleting them: Label Studio
    # asks /setup for the version and /predict for the tasks, and stores the answers.
    dm_action(server, pid, "delete_tasks_predictions", tasks)
    assert predictions_of(client, pid) == {}
    assert dm_action(server, pid, "retrieve_tasks_predictions", tasks)["processed_items"] == len(tasks)
    assert "/predict for 30 task(s) answered with " + version in backend.log()
    assert one_prediction_each(client, pid, tasks, version)
    scores = {task: found[0][1] for task, found in predictions_of(client, pid).items()}
    ranked_by_score = sorted(tasks, key=lambda t: (scores[t], t))
    assert ranked_by_score[:BUDGET] == want                       # lowest score = rank 1
    assert all(scores[t] > max(scores[w] for w in want) for t in tasks if t not in want)
    assert by_prediction_score(client, pid)[:BUDGET] == want      # the Data Manager's own sort
    # The priority view lists the selection, rank 1 first, and no task data was written.
    assert priority_view(client, pid) == want
    assert not any("activeft_rank" in t.data for t in client.tasks.list(project=pid, fields="task_only"))
    # Settings > Model shows the version, and a second retrieve finds nothing to ask for.
    assert [ml.model_version for ml in client.ml.list(project=pid)] == [version]
    dm_action(server, pid, "retrieve_tasks_predictions", tasks)
    time.sleep(6)  # the backend's check after the /predict answer (5 s): still one per task
    assert one_prediction_each(client, pid, tasks, version)
    print(f"connect -> ranked queue of {len(tasks)} tasks: {seconds:.1f} s")


def test_annotations_rerank_the_rest_once_per_burst(server, client, backend, project_a, features):
    pid, tasks = project_a
    before = backend.project(pid)
    old_version, old_ranked = before["model_version"], before["ranked"]
    annotated = old_ranked[:2]
    for task in annotated:  # two labels in quick succession: one re-rank
        client.annotations.create(id=task, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                    "value": {"choices": ["a"]}}])
    entry = wait_for("the re-rank", lambda: published(backend, pid, other_than=old_version), backend)
    version = entry["model_version"]
    assert version.startswith("activeft-2-"), version        # one new ranking for the burst
    assert entry["rankings_since_start"] == 2 and entry["annotated"] == 2
    want = expected_ranking(features, tasks, fixed_tasks=annotated)
    assert entry["ranked"] == want
    assert not set(annotated) & set(want)                    # the annotated tasks are no longer queued
    # Not just the old queue minus the annotated tasks: the picks moved away from what they cover.
    assert want != [t for t in old_ranked if t not in annotated][:BUDGET]
    wait_for("the new predictions", lambda: one_prediction_each(client, pid, tasks, version), backend, timeout=30)
    assert client.projects.get(id=pid).model_version == version
    scores = {task: found[0][1] for task, found in predictions_of(client, pid).items()}
    assert all(scores[t] == 1.0 for t in annotated)          # last
    assert sorted(tasks, key=lambda t: (scores[t], t))[:BUDGET] == want
    assert by_prediction_score(client, pid)[:BUDGET] == want
    assert priority_view(client, pid) == want


def test_killed_mid_rerank_the_restarted_backend_serves_the_last_complete_ranking(
        server, client, backend, project_a, features):
    pid, tasks = project_a
    before = backend.project(pid)
    last_version, last_ranked = before["model_version"], before["ranked"]
    stored = load_ranking(state_folder(str(backend.state_dir), server.url), pid)
    assert stored.version == last_version and stored.published
    third = last_ranked[0]
    client.annotations.create(id=third, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                 "value": {"choices": ["b"]}}])
    wait_for("the re-rank to start", lambda: backend.health()[1]["busy"] == ["rank", pid], backend, every=0.05)
    time.sleep(0.3)
    backend.kill()                                           # SIGKILL, mid-re-rank
    assert backend.process.returncode == -signal.SIGKILL
    kept = load_ranking(state_folder(str(backend.state_dir), server.url), pid)
    assert kept is not None and kept.version == last_version  # never half-written
    assert one_prediction_each(client, pid, tasks, last_version)

    backend.start()
    # Label Studio's first request after the restart is answered from the stored ranking, at once.
    project = client.projects.get(id=pid)
    uid = project_uid(pid, project.created_at)
    started = time.monotonic()
    answer = httpx.post(backend.url + "/predict", json={"project": uid, "label_config": CONFIG,
                                                        "tasks": [{"id": t} for t in tasks]}, timeout=30)
    assert answer.status_code == 200 and time.monotonic() - started < 5
    results = answer.json()["results"]
    assert {r["model_version"] for r in results} == {last_version}
    assert [r["score"] for r in results] == [kept.scores[t] for t in tasks]
    # ... and it catches up with the annotation it missed.
    entry = wait_for("the catch-up re-rank", lambda: published(backend, pid, other_than=last_version), backend)
    assert entry["model_version"].startswith("activeft-3-")
    want = expected_ranking(features, tasks, fixed_tasks=[*stored.labeled, third])
    assert entry["ranked"] == want and third not in want
    wait_for("its predictions", lambda: one_prediction_each(client, pid, tasks, entry["model_version"]), backend,
             timeout=30)


# --------------------------------------------------------------------------------------------------------------
# More projects, bad input


def test_a_second_project_gets_its_own_ranking_and_unreadable_images_go_last(
        server, client, backend, project_a, pool, features):
    from activeft_label.selection import select

    a_before = backend.project(project_a[0])["model_version"]
    broken = [{"image": "/data/local-files/?d=pool/does-not-exist.png"},
              {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}]         # "not an image"
    pid, tasks = make_project(server, client, "Backend B", pool[:12], extra_tasks=broken)
    readable, unreadable = tasks[:12], tasks[12:]
    client.ml.create(url=backend.url, project=pid, title="ActiveFT")      # through the SDK, as the UI does
    entry = wait_for("project B's ranking", lambda: published(backend, pid), backend)
    assert entry["model_version"] != a_before and entry["tasks"] == 14
    assert sorted(item["task"] for item in entry["skipped"]) == unreadable
    assert "ranked last, its image could not be read" in backend.log()
    from activeft_label.embeddings import embed_images

    own = embed_images([str(p) for p in pool[:12]], cache_dir=False, progress=False).features  # its own batch
    result = select(own, BUDGET, iterations=ITERS)
    assert entry["ranked"] == [readable[int(r)] for r in result.ranked_indices]
    wait_for("B's predictions", lambda: one_prediction_each(client, pid, tasks, entry["model_version"]), backend,
             timeout=30)
    scores = {task: found[0][1] for task, found in predictions_of(client, pid).items()}
    assert all(scores[t] == 1.0 for t in unreadable)
    assert all(scores[t] > scores[r] for t in unreadable for r in readable)
    # Project A kept its own ranking and predictions.
    assert backend.project(project_a[0])["model_version"] == a_before
    assert one_prediction_each(client, project_a[0], project_a[1], a_before)


def test_retrieve_while_the_first_ranking_runs_still_gives_one_prediction_per_task(server, client, backend, pool):
    pid, tasks = make_project(server, client, "Backend C", pool[12:24])
    client.ml.create(url=backend.url, project=pid, title="ActiveFT")      # /setup: the first ranking starts
    assert backend.project(pid)["status"] in ("queued", "ranking")
    dm_action(server, pid, "retrieve_tasks_predictions", tasks)          # /predict waits for it, then answers
    version = backend.project(pid)["model_version"]
    assert version.startswith("activeft-1-")
    assert f"/predict for {len(tasks)} task(s) answered with {version}" in backend.log()
    wait_for("the ranking", lambda: published(backend, pid), backend)
    # Label Studio stored the answers; the backend imported none of them again, and set the project's version.
    wait_for("the project's model version", lambda: client.projects.get(id=pid).model_version == version, backend,
             timeout=40)
    assert one_prediction_each(client, pid, tasks, version)


def test_a_project_without_an_image_object_is_refused_with_the_reason(server, client, backend):
    project = client.projects.create(title="Backend texts", label_config=(
        '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="x"/></Choices>'
        '</View>'))
    client.projects.import_tasks(id=project.id, request=[{"text": "hello"}])
    out = cli(server, ["labelstudio", "connect", "-p", str(project.id), "--backend-url", backend.url], expect=2)
    assert "no <Image> object" in out and "Text" in out
    assert client.ml.list(project=project.id) == []
    assert "no <Image> object" in backend.project(project.id)["error"]


def test_a_wrong_api_key_shows_in_health_and_the_log_never_the_key(server, tmp_path):
    bad_key = "0123456789abcdef0123456789abcdef76543210"
    process = BackendProcess(server, tmp_path / "bad", bad_key).start()
    try:
        status, body = wait_for("the refusal", lambda: (lambda h: h if h[0] == 503 else None)(process.health()),
                                process, timeout=30)
        assert body["status"] == "ERROR" and "refused the API key" in body["error"]
        assert bad_key not in json.dumps(body)
        assert "refused the API key" in process.log() and bad_key not in process.log()
    finally:
        process.stop()


def test_setup_with_backend_url_connects_the_new_project(server, client, backend, pool):
    out = cli(server, ["labelstudio", "setup", str(pool[0].parent), "--title", "Backend setup", "--labels", "a,b",
                       "--budget", "6", "--iters", "50", "--document-root", server.local_files_root,
                       "--backend-url", backend.url, "-q"])
    project = [p for p in client.projects.list() if p.title == "Backend setup"][0]
    assert f"Connected project {project.id}" in out
    assert [ml.url for ml in client.ml.list(project=project.id)] == [backend.url]
    entry = wait_for("the new project's ranking", lambda: published(backend, project.id), backend)
    tasks = [t.id for t in client.tasks.list(project=project.id, fields="task_only")]
    assert len(tasks) == 6 and sorted(entry["ranked"]) == sorted(tasks)   # budget 8 > 6 tasks: all of them
    wait_for("its predictions", lambda: one_prediction_each(client, project.id, tasks, entry["model_version"]),
             backend, timeout=30)
