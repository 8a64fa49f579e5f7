"""The operators in the real FiftyOne App, driven by a real headless browser.

Starts the App server (``python -m fiftyone.server.main``) on 127.0.0.1 in a
session of its own, with the plugin secrets pointing at a real Label Studio
server, and opens datasets in Debian's Chromium through Playwright.  The
tests find the operators in the operator browser, fill their forms, run them
immediately and scheduled, and check what the browser received and shows:
the progress messages streamed while a run works (and rendered in the page),
the result panel each run shows at the end, the errors, and the App's
confirmation of a scheduled run (which a delegated-operations worker then
executes, here ``DelegatedOperationService`` in the test process).  Needs
``playwright`` (pip) and ``/usr/bin/chromium`` (Debian's ``chromium``
package); skipped, saying why, where either is missing.  The push and pull
tests also need Label Studio (``label-studio``, ``label-studio-sdk``).
"""

import fiftyone_env as env  # noqa: I001  (must come before fiftyone: it sets FiftyOne's environment)

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from bson import ObjectId

fo = pytest.importorskip("fiftyone")
sync_api = pytest.importorskip("playwright.sync_api", reason="the App test needs `pip install playwright`")

from click.testing import CliRunner  # noqa: E402
from fiftyone.operators.delegated import DelegatedOperationService  # noqa: E402
from fiftyone.operators.executor import ExecutionRunState  # noqa: E402

from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import fiftyone as aft  # noqa: E402

CHROMIUM = os.environ.get("ACTIVEFT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
N = 30
PLUGIN = "@activeft/activeft-label"
HAVE_LABEL_STUDIO = all(importlib.util.find_spec(name) for name in ("label_studio", "label_studio_sdk"))
needs_label_studio = pytest.mark.skipif(not HAVE_LABEL_STUDIO, reason="needs label-studio and label-studio-sdk")

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
              pytest.mark.usefixtures("one_torch_thread")]

#: Records, in the page, every short text that appears or changes (to see the progress bar's labels rendered).
WATCH_TEXTS = """() => {
  window.__activeftTexts = new Set();
  const note = (text) => { if (text && text.length < 400) window.__activeftTexts.add(text.trim()); };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      note(m.target.textContent);
      for (const node of m.addedNodes) note(node.textContent);
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


# --------------------------------------------------------------------------------------------------------------
# The servers and the browser (one of each for the module)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url, process, timeout=180):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"the App server exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=3).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the App did not answer at {url} within {timeout} s")


def _stop(process):
    """Stop the App server and whatever it started (its own session), by process group id."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def labelstudio(tmp_path_factory):
    """A real Label Studio server (None where it is not installed: the tests that need it are skipped)."""
    if not HAVE_LABEL_STUDIO:
        yield None
        return
    from labelstudio_server import LabelStudioServer

    server = LabelStudioServer(tmp_path_factory.mktemp("labelstudio-app"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory, labelstudio):
    """The plugin installed and the App server running, its plugin secrets naming the Label Studio server."""
    assert CliRunner().invoke(main, ["fiftyone", "install-plugin", "--force"]).exit_code == 0
    # This process starts the database service first and the App server attaches to it (an App server that
    # started it in its own session was seen not to answer this process, which then failed on the locked dir).
    fo.list_datasets()
    secrets = _secrets(labelstudio)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app-server") / "app-server.log"
    log = open(log_path, "w")
    # OMP_NUM_THREADS=1: the optimizer's tiny steps are far slower with 2 threads on a busy 2-core machine.
    server = subprocess.Popen(
        [sys.executable, "-m", "fiftyone.server.main", "--port", str(port), "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **secrets})
    try:
        _wait_http(f"http://127.0.0.1:{port}/", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(server)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _dataset(folder, name, seed=21):
    paths = env.write_images(str(folder), N, seed=seed)
    rng = np.random.default_rng(2)
    dataset = fo.Dataset(env.unique_name(name), persistent=True)  # the App server is another process
    dataset.add_samples([fo.Sample(filepath=p, emb=rng.normal(size=24)) for p in paths])
    return dataset


def _secrets(labelstudio):
    return {"LABEL_STUDIO_URL": labelstudio.url, "LABEL_STUDIO_API_KEY": labelstudio.personal_token} \
        if labelstudio else {}


def _run_by_a_worker(op_id, log_path, secrets=None, timeout=600):
    """Start ``fiftyone delegated launch`` (the worker the forms name) until it has run operation ``op_id``.

    Returns the operation as FiftyOne recorded it.  The worker runs in a session of its own (with the plugin
    secrets in its environment, as a worker must have them) and is stopped by its process group id.
    """
    service = DelegatedOperationService()
    log = open(log_path, "w")
    worker = subprocess.Popen(
        [sys.executable, "-c", "from fiftyone.core.cli import main; main()", "delegated", "launch"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(secrets or {})})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op = service.get(ObjectId(op_id))
            if op.run_state in ExecutionRunState.TERMINAL_STATES:
                return op
            assert worker.poll() is None, f"the worker exited ({worker.returncode}); see {log_path}"
            time.sleep(0.5)
        raise AssertionError(f"the worker did not finish operation {op_id} within {timeout} s; see {log_path}")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGINT)      # what Ctrl-C does: the worker stops between operations
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        log.close()


class App:
    """One browser page on a dataset in the App, and the steps the tests take in it."""

    TILES = "[data-cy=looker-checkbox-input-]"

    def __init__(self, browser, url, dataset):
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.set_default_timeout(120_000)
        self.page.goto(f"{url}/datasets/{dataset.name}")
        self.page.wait_for_selector(self.TILES, state="attached")
        self.page.evaluate(WATCH_TEXTS)

    def open(self, label):
        """Open an operator's form from the operator browser (the ` key; pressed again until the browser shows)."""
        search = self.page.get_by_placeholder("Search operations by name...")
        deadline = time.monotonic() + 120
        while not search.is_visible():
            assert time.monotonic() < deadline, "the operator browser did not open"
            self.page.evaluate("() => document.activeElement && document.activeElement.blur()")
            self.page.keyboard.press("`")
            try:
                search.wait_for(timeout=5_000)
            except sync_api.TimeoutError:
                pass
        search.fill("ActiveFT")
        entry = self.page.get_by_text(label)
        entry.wait_for()
        entry.click()

    def field(self, label):
        return self.page.locator(
            f"xpath=//p[text()='{label}']/ancestor::div[contains(@class,'MuiGrid-item')][1]//input")

    def execute(self, operator, timeout=600_000):
        """Click Execute; return the messages the App streamed from the operator's run (a list of (uri, params))."""
        with self.page.expect_response(
                lambda r: r.url.endswith("/operators/execute/generator")
                and f"{PLUGIN}/{operator}" in (r.request.post_data or ""), timeout=timeout) as answer:
            self.page.get_by_role("button", name="Execute", exact=True).click()
        body = answer.value.text()              # waits until the run's stream is complete
        messages = [json.loads(line)["body"] for line in body.splitlines() if line.strip()]
        return [(m["operator_uri"], m.get("params") or {}) for m in messages]

    def schedule(self, operator):
        """Choose Schedule in the form's execution menu, click it, wait for the App's confirmation.

        Returns the queued operation as the App received it (a dict; ``id`` is the operation's id).
        """
        self.page.locator("[aria-label='split button'] button[aria-haspopup=menu]").click()
        self.page.get_by_role("menuitem").filter(has_text="Schedule").click()
        with self.page.expect_response(
                lambda r: "/operators/execute" in r.url and f"{PLUGIN}/{operator}" in (r.request.post_data or "")
        ) as answer:
            self.page.get_by_role("button", name="Schedule", exact=True).click()
        # The App's own confirmation (a notification; the form's notice quotes it in a longer text).
        self.page.get_by_text("Operation successfully scheduled", exact=True).wait_for()
        queued = json.loads(answer.value.text())
        assert queued["delegated"] and not queued["error"], queued
        return queued["result"]

    def done(self):
        """Close the panel a run left open (its progress, then its result)."""
        done = self.page.get_by_role("button", name="Done", exact=True)
        done.click()
        done.wait_for(state="hidden")

    def rendered_texts(self):
        return self.page.evaluate("() => Array.from(window.__activeftTexts)")

    def close(self):
        self.page.close()


def _check_progress(app, messages, final_label_part, rendered=True):
    """The run streamed set_progress messages in order, ending with a show_output; the page rendered a label.

    ``rendered=False`` for a run so short that its messages may reach the page in one piece, which the App may
    render as one update (the last: the result).
    """
    progress = [params for uri, params in messages if uri == "set_progress"]
    assert len(progress) >= 2, messages
    fractions = [p["progress"] for p in progress]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1, fractions
    assert any(final_label_part in p.get("label", "") for p in progress), progress
    uris = [uri for uri, _ in messages]
    assert "show_output" in uris and uris.index("show_output") > max(i for i, u in enumerate(uris)
                                                                   if u == "set_progress")
    if rendered:  # the page rendered the progress bar's labels while the run worked (not only the result)
        texts = " | ".join(app.rendered_texts())
        assert any(p["label"] in texts for p in progress), texts[-2000:]
    return dict([m for m in messages if m[0] == "show_output"][-1][1]["results"])


# --------------------------------------------------------------------------------------------------------------
# Selection


def test_operator_in_the_app_browser_tags_samples(app, browser, tmp_path):
    dataset = _dataset(tmp_path / "images", "activeft-app")
    page = App(browser, app, dataset)
    try:
        # The operator browser lists the operator.
        page.open("ActiveFT: select samples to annotate")

        # The form shows the target size; a budget larger than the target is refused with the reason.
        page.page.get_by_text(f"Target: {N} samples").wait_for()
        budget = page.field("Budget")
        budget.fill(str(N + 1))
        page.page.get_by_text(f"larger than the {N}").first.wait_for()
        execute = page.page.get_by_role("button", name="Execute", exact=True)
        sync_api.expect(execute).to_be_disabled()
        page.page.screenshot(path=str(tmp_path / "form-error.png"))

        budget.fill("4")
        page.page.get_by_text("Budget: 4 samples").wait_for()
        sync_api.expect(execute).to_be_enabled()
        messages = page.execute("select_samples")

        # The run record is written last: once it holds the picks, tags, ranks and the view are there.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len((aft.get_run(dataset) or {}).get("sample_ids", [])) != 4:
            time.sleep(1)
            dataset.reload()
        assert dataset.count_sample_tags() == {"activeft": 4}
        ranked = dataset.load_saved_view("activeft")
        assert ranked.values("activeft_rank") == [1, 2, 3, 4]

        # Progress was streamed and shown; then the App shows the result, the ranked view and what it did.
        shown = _check_progress(page, messages, "selecting 4 of 30 samples")
        assert shown["selected"] == 4 and shown["saved_view"] == "activeft"
        page.page.get_by_text("Selected samples:").wait_for()
        page.page.get_by_text("ActiveFT selected 4 of 30 samples").wait_for()
        page.page.wait_for_function(f"document.querySelectorAll('{App.TILES}').length === 4")
        shot = tmp_path / "app-after-run.png"
        page.page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
        dataset.delete()


def test_a_scheduled_selection_is_confirmed_and_a_worker_runs_it(app, browser, tmp_path):
    dataset = _dataset(tmp_path / "images", "activeft-app-scheduled", seed=4)
    page = App(browser, app, dataset)
    service = DelegatedOperationService()
    try:
        page.open("ActiveFT: select samples to annotate")
        page.field("Budget").fill("3")
        page.field("Run name").fill("background")
        # The form says how a scheduled run executes, naming the run as the worker will list it.
        page.page.get_by_text("(run 'background')").first.wait_for()
        page.page.get_by_text("fiftyone delegated launch", exact=False).first.wait_for()
        queued = page.schedule("select_samples")
        assert "background" not in dataset.list_runs() and dataset.count_sample_tags() == {}  # queued, not run
        assert queued["label"] == f"ActiveFT: select 3 of {dataset.name} (run 'background')"
        assert queued["run_state"] == ExecutionRunState.QUEUED

        op = _run_by_a_worker(queued["id"]["$oid"], tmp_path / "worker.log")
        assert op.run_state == ExecutionRunState.COMPLETED, op.result.error if op.result else op
        assert op.status.progress == 1.0 and op.result.result["selected"] == 3
        dataset.reload()
        assert dataset.load_saved_view("background").values("activeft_rank") == [1, 2, 3]
    finally:
        page.close()
        for op in service.list_operations(dataset_name=dataset.name):
            service.delete_operation(op.id)
        dataset.delete()


# --------------------------------------------------------------------------------------------------------------
# Label Studio push and pull


@needs_label_studio
def test_push_and_pull_in_the_app_stream_progress_and_show_their_results(app, browser, labelstudio, tmp_path):
    from activeft_label.connectors import labelstudio as ls

    dataset = _dataset(tmp_path / "images", "activeft-app-sync", seed=8)
    page = App(browser, app, dataset)
    try:
        page.open("ActiveFT: push the selection to Label Studio")
        page.field("Project title (find or create)").fill(f"App push {os.getpid()}")
        page.field("Labels, comma-separated (to create the project)").fill("a,b,c")
        page.field("Budget").fill("5")
        page.page.get_by_text(f"project 'App push {os.getpid()}'", exact=False).first.wait_for()  # form resolved
        messages = page.execute("push_to_labelstudio")

        # Progress while it worked: selecting, then the images and tasks done out of the total.
        shown = _check_progress(page, messages, "5 of 5")
        assert shown["queued"] == 5 and shown["created"] == 5 and shown["url"].startswith(labelstudio.url)
        page.page.get_by_text("Samples queued:").wait_for()
        link = page.page.get_by_role("link", name="Open the priority view in Label Studio")
        link.wait_for()
        assert link.get_attribute("href") == shown["url"]
        page.page.get_by_text("Queued 5 samples in Label Studio project").wait_for()
        project_id = shown["project_id"]
        page.done()

        with ls.connect(labelstudio.url, labelstudio.personal_token) as conn:
            tasks = ls.pull_tasks(conn, project_id)
            assert len(tasks) == 5
            for task in tasks[:2]:
                conn.client.annotations.create(id=int(task["id"]), result=[{
                    "from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["b"]}}])

        page.open("ActiveFT: pull annotations from Label Studio")
        page.field("Label Studio project id").fill(str(project_id))
        page.page.get_by_text(f"pull project {project_id} into", exact=False).first.wait_for()
        messages = page.execute("pull_from_labelstudio")
        shown = _check_progress(page, messages, "read 5 of 5 tasks", rendered=False)  # one request: fast
        assert shown["written"] == 2
        page.page.get_by_text("Labels written:").wait_for()
        page.page.get_by_text("2 labels written to 'ground_truth'").first.wait_for()
        dataset.reload()
        assert sorted(label.label for label in dataset.exists("ground_truth").values("ground_truth")) == ["b", "b"]
        page.done()

        # An error while a run works is shown (a notification and the result panel), not swallowed.
        page.open("ActiveFT: pull annotations from Label Studio")
        page.field("Label Studio project id").fill("7777")
        page.page.get_by_text("pull project 7777 into", exact=False).first.wait_for()
        messages = page.execute("pull_from_labelstudio")
        assert [uri for uri, _ in messages] == ["notify", "show_output"], messages
        assert messages[0][1]["variant"] == "error" and "no project 7777" in messages[0][1]["message"]
        page.page.get_by_text("The run failed").wait_for()
        page.page.get_by_text("no project 7777", exact=False).first.wait_for()
        page.page.screenshot(path=str(tmp_path / "app-pull-error.png"))
    finally:
        page.close()
        dataset.delete()


@needs_label_studio
def test_scheduled_push_and_pull_are_confirmed_and_a_worker_runs_them(app, browser, labelstudio, tmp_path):
    from activeft_label.connectors import labelstudio as ls

    dataset = _dataset(tmp_path / "images", "activeft-app-sync-scheduled", seed=9)
    page = App(browser, app, dataset)
    service = DelegatedOperationService()
    title = f"App scheduled push {os.getpid()}"
    try:
        page.open("ActiveFT: push the selection to Label Studio")
        page.field("Project title (find or create)").fill(title)
        page.field("Labels, comma-separated (to create the project)").fill("a,b,c")
        page.field("Budget").fill("4")
        page.page.get_by_text(f"project '{title}', round 1", exact=False).first.wait_for()
        page.page.get_by_text("fiftyone delegated launch", exact=False).first.wait_for()
        queued = page.schedule("push_to_labelstudio")
        assert queued["label"] == f"ActiveFT: push {dataset.name} to project '{title}', round 1"
        assert aft.get_run(dataset) is None                                    # queued, not run

        op = _run_by_a_worker(queued["id"]["$oid"], tmp_path / "worker-push.log", _secrets(labelstudio))
        assert op.run_state == ExecutionRunState.COMPLETED, op.result.error if op.result else op
        assert 0 < op.status.progress <= 1 and op.status.label
        result = op.result.result
        assert result["queued"] == 4 and result["created"] == 4
        project_id = result["project_id"]

        with ls.connect(labelstudio.url, labelstudio.personal_token) as conn:
            task = ls.pull_tasks(conn, project_id)[0]
            conn.client.annotations.create(id=int(task["id"]), result=[{
                "from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["c"]}}])

        page.open("ActiveFT: pull annotations from Label Studio")
        page.field("Label Studio project id").fill(str(project_id))
        page.page.get_by_text(f"pull project {project_id} into", exact=False).first.wait_for()
        queued = page.schedule("pull_from_labelstudio")
        assert queued["label"] == f"ActiveFT: pull project {project_id} into {dataset.name}.ground_truth"
        op = _run_by_a_worker(queued["id"]["$oid"], tmp_path / "worker-pull.log", _secrets(labelstudio))
        assert op.run_state == ExecutionRunState.COMPLETED, op.result.error if op.result else op
        assert op.status.progress == 1.0 and op.result.result["written"] == 1
        dataset.reload()
        assert dataset.count("ground_truth") == 1
    finally:
        page.close()
        for op in service.list_operations(dataset_name=dataset.name):
            service.delete_operation(op.id)
        dataset.delete()
