"""The ML backend's HTTP protocol, on Starlette's TestClient: no Label Studio, no worker thread.

The Backend here gets a stand-in connection and its rankings are set by
hand; what Label Studio itself does with the answers is tested against a
real server in tests/integration/test_ml_backend.py.
"""

import base64
import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from click.testing import CliRunner  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from activeft_label.backend import Backend, Settings, create_app, save_ranking  # noqa: E402
from activeft_label.backend.scores import PENDING_VERSION, priority_scores, unranked_score  # noqa: E402
from activeft_label.backend.service import RANK  # noqa: E402
from activeft_label.backend.state import Ranking  # noqa: E402
from activeft_label.cli import main  # noqa: E402
from activeft_label.errors import InputError  # noqa: E402

KEY = "secret-key-that-must-never-show-0123456789"
IMAGE_CONFIG = '<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="a"/>' \
               '</Choices></View>'
TEXT_CONFIG = '<View><Text name="text" value="$text"/></View>'


class StandIn:
    """What the backend uses of a connector Connection before it calls Label Studio."""

    url = "http://ls.test:8080"
    user = "admin@example.test"
    token_kind = "personal"

    def close(self):
        pass


def stand_in_connect(url, api_key):
    assert api_key == KEY
    return StandIn()


def refused_connect(url, api_key):
    raise InputError(f"Label Studio at {url} refused the API key {api_key} (HTTP 401: Invalid token.)")


def make_backend(tmp_path, connect=stand_in_connect, **overrides):
    settings = Settings(label_studio_url="http://ls.test:8080", state_dir=str(tmp_path / "state"), predict_wait=0.5,
                        **overrides)
    backend = Backend(settings, KEY, connect=connect)
    backend.try_connect()
    return backend


def a_ranking(project=3, ranked=(21, 22, 23), others=(24, 25), last=(26,), version="activeft-1-89abcdef",
              published=True):
    return Ranking(project=project, version=version, counter=1, key="89abcdef" * 8,
                   scores=priority_scores(list(ranked), others, last), ranked=list(ranked), labeled=[26],
                   budget=len(ranked), project_uid=f"{project}.1700000000", published=published)


@pytest.fixture
def backend(tmp_path):
    return make_backend(tmp_path)


@pytest.fixture
def client(backend):
    return TestClient(create_app(backend, start=False))


def test_health_is_up_and_lists_the_projects(backend, client):
    backend.project(3).ranking = a_ranking()
    backend.project(3).status = "ready"
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "UP" and body["model_class"] == "ActiveFT"
    assert body["projects"]["3"]["model_version"] == "activeft-1-89abcdef"
    assert body["projects"]["3"]["ranked"] == [21, 22, 23]
    assert client.get("/").json()["status"] == "UP"


def test_a_refused_key_makes_health_fail_with_the_reason_and_without_the_key(tmp_path):
    backend = make_backend(tmp_path, connect=refused_connect)
    client = TestClient(create_app(backend, start=False))
    answer = client.get("/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "ERROR" and "refused the API key" in body["error"]
    assert KEY not in answer.text
    assert client.post("/setup", json={"project": "3.1", "schema": IMAGE_CONFIG}).status_code == 503


def test_setup_starts_the_first_ranking_and_reports_the_version(backend, client):
    answer = client.post("/setup", json={"project": "3.1700000000", "schema": IMAGE_CONFIG,
                                         "hostname": "http://ls.test:8080", "access_token": "token-of-the-creator"})
    assert answer.status_code == 200
    assert answer.json() == {"model_version": PENDING_VERSION}
    assert backend.jobs.pending((RANK, 3)) and backend.jobs.due_at((RANK, 3)) <= backend.clock()
    backend.jobs.cancel((RANK, 3))
    entry = backend.project(3)
    entry.ranking, entry.checked = a_ranking(), True
    assert client.post("/setup", json={"project": "3.1700000000", "schema": IMAGE_CONFIG}).json() == {
        "model_version": "activeft-1-89abcdef"}
    assert not backend.jobs.pending((RANK, 3))   # ranked and checked: nothing to do


def test_a_config_without_an_image_is_refused_with_the_reason(backend, client):
    for path, body in (("/setup", {"project": "4.1", "schema": TEXT_CONFIG}),
                       ("/predict", {"project": "4.1", "label_config": TEXT_CONFIG, "tasks": [{"id": 1}]})):
        answer = client.post(path, json=body)
        assert answer.status_code == 422
        assert "no <Image> object" in answer.json()["error"] and "Text" in answer.json()["error"]
    assert "no <Image> object" in client.get("/health").json()["projects"]["4"]["error"]


def test_predict_answers_every_task_in_order_from_the_ranking(backend, client):
    entry = backend.project(3)
    entry.ranking, entry.checked = a_ranking(), True
    tasks = [{"id": 25, "data": {}}, {"id": 21}, {"id": 26}, {"id": 99}]
    answer = client.post("/predict", json={"project": "3.1700000000", "label_config": IMAGE_CONFIG, "tasks": tasks})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert len(results) == 4
    assert all(r["result"] == [] and r["model_version"] == "activeft-1-89abcdef" for r in results)
    scores = [r["score"] for r in results]
    ranking = entry.ranking
    assert scores[:3] == [ranking.scores[25], ranking.scores[21], ranking.scores[26]]
    assert scores[3] == unranked_score(3)               # a task newer than the ranking: after the selection
    assert backend.jobs.pending((RANK, 3))              # ... and it asks for a re-rank
    assert set(entry.claims) == {25, 21, 26, 99}         # Label Studio stores these itself


def test_predict_waits_for_the_first_ranking_then_gives_up_or_reports_the_error(backend, client):
    body = {"project": "5.1", "label_config": IMAGE_CONFIG, "tasks": [{"id": 1}, {"id": 2}]}
    answer = client.post("/predict", json=body)           # predict_wait is 0.5 s here
    assert answer.status_code == 503 and "still being ranked" in answer.json()["error"]
    assert backend.project(5).pending_claims == set()
    backend.jobs.cancel((RANK, 5))
    backend.busy = (RANK, 5)                              # a ranking runs ... and fails
    entry = backend.project(5)
    entry.status, entry.error = "error", "project 5 has no tasks yet"
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422 and "no tasks" in answer.json()["error"]


def test_webhooks_ask_for_a_debounced_rerank(backend, client):
    for action in ("ANNOTATION_CREATED", "ANNOTATIONS_DELETED", "START_TRAINING"):
        answer = client.post("/webhook", json={"action": action, "project": {"id": 8, "label_config": IMAGE_CONFIG},
                                               "annotation": {"id": 1}})
        assert answer.status_code == 201
    assert backend.jobs.pending((RANK, 8))
    assert backend.jobs.due_at((RANK, 8)) > backend.clock()  # after the quiet period
    other = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 9}})
    assert other.status_code == 200 and other.json()["status"] == "Unknown event"
    assert not backend.jobs.pending((RANK, 9))
    assert client.post("/webhook", content=b"not json").status_code == 400


def test_versions_rankings_metrics_and_bad_requests(backend, client):
    backend.project(3).ranking = a_ranking()
    assert client.get("/versions").json() == {"versions": ["activeft-1-89abcdef"]}
    assert client.get("/metrics").json() == {}
    found = client.get("/rankings/3").json()
    assert found["ranked"] == [21, 22, 23] and found["model_version"] == "activeft-1-89abcdef"
    assert client.get("/rankings/4").status_code == 404
    assert client.post("/predict", json={"project": "x.1", "tasks": []}).status_code == 400
    assert client.post("/predict", json={"project": "3.1", "tasks": [{"no": "id"}]}).status_code == 400


def test_basic_auth_guards_every_route(backend):
    client = TestClient(create_app(backend, basic_auth=("ls", "s3cret-pass"), start=False))
    assert client.get("/health").status_code == 401
    wrong = base64.b64encode(b"ls:nope").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.get("/health", auth=("ls", "s3cret-pass")).status_code == 200


def test_a_started_backend_serves_its_stored_rankings_and_publishes_an_unfinished_one(tmp_path):
    folder = make_backend(tmp_path).folder
    save_ranking(folder, a_ranking(project=3))
    save_ranking(folder, a_ranking(project=4, version="activeft-2-89abcdef", published=False))
    backend = make_backend(tmp_path).start(worker=False)
    assert backend.jobs.pending((RANK, 4)) and not backend.jobs.pending((RANK, 3))  # 4 is published first
    with TestClient(create_app(backend, start=False)) as client:
        health = client.get("/health").json()
        assert health["projects"]["3"]["model_version"] == "activeft-1-89abcdef"
        answer = client.post("/predict", json={"project": "3.1700000000", "tasks": [{"id": 22}]}).json()
        assert answer["results"][0]["model_version"] == "activeft-1-89abcdef"
        assert answer["results"][0]["score"] == a_ranking().scores[22]
        assert health["projects"]["4"]["published"] is False
        # Stored by another project of the same id (another server or database): not served.
        assert client.post("/setup", json={"project": "3.1800000000", "schema": IMAGE_CONFIG}).json() == {
            "model_version": PENDING_VERSION}
    backend.stop()


def test_serve_checks_its_options_and_hands_over_settings_the_backend_reads(tmp_path):
    env = {"LABEL_STUDIO_URL": "http://ls.test:8080/", "LABEL_STUDIO_API_KEY": KEY}
    result = CliRunner().invoke(main,
                                ["labelstudio", "serve", "--port", "9999", "-b", "5%", "--iters", "50",
                                 "--state-dir", str(tmp_path), "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    settings = Settings.from_json(result.output)
    assert settings.port == 9999 and settings.budget == "5%" and settings.selection["iterations"] == 50
    assert settings.label_studio_url == "http://ls.test:8080" and settings.state_dir == str(tmp_path)
    for args, message in ((["-b", "0"], "at least 1"), (["--debounce", "5", "--max-delay", "1"], "max-delay")):
        bad = CliRunner().invoke(main,
                                 ["labelstudio", "serve", "--dry-run", *args], env=env)
        assert bad.exit_code == 2 and message in bad.output, bad.output
    missing = CliRunner().invoke(main,
                                 ["labelstudio", "serve", "--dry-run"], env={"LABEL_STUDIO_URL": "http://x:1",
                                                                             "LABEL_STUDIO_API_KEY": ""})
    assert missing.exit_code == 2 and "API key" in missing.output
    json.loads(result.output)
