"""The operator in the real FiftyOne App, driven by a real headless browser.

Starts the App server (``python -m fiftyone.server.main``) on 127.0.0.1 in a
session of its own, opens the dataset in Debian's Chromium through
Playwright, finds the operator in the operator browser, checks the form's
target size, budget and error message, runs it, and checks the database and
the grid.  Needs ``playwright`` (pip) and ``/usr/bin/chromium`` (Debian's
``chromium`` package); skipped, saying why, where either is missing.
"""

import fiftyone_env as env  # noqa: I001  (must come before fiftyone: it sets FiftyOne's environment)

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")
sync_api = pytest.importorskip("playwright.sync_api", reason="the App test needs `pip install playwright`")

from click.testing import CliRunner  # noqa: E402

from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import fiftyone as aft  # noqa: E402

CHROMIUM = os.environ.get("ACTIVEFT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
N = 30


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


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_operator_in_the_app_browser_tags_samples(tmp_path):
    assert CliRunner().invoke(main, ["fiftyone", "install-plugin", "--force"]).exit_code == 0
    paths = env.write_images(str(tmp_path / "images"), N, seed=21)
    rng = np.random.default_rng(2)
    dataset = fo.Dataset(env.unique_name("activeft-app"), persistent=True)  # the App server is another process
    dataset.add_samples([fo.Sample(filepath=p, emb=rng.normal(size=24)) for p in paths])

    port = _free_port()
    log = open(tmp_path / "app-server.log", "w")
    # OMP_NUM_THREADS=1: the optimizer's tiny steps are far slower with 2 threads on a busy 2-core machine.
    server = subprocess.Popen(
        [sys.executable, "-m", "fiftyone.server.main", "--port", str(port), "--address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _wait_http(f"http://127.0.0.1:{port}/", server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(120_000)
                page.goto(f"http://127.0.0.1:{port}/datasets/{dataset.name}")
                tiles = "[data-cy=looker-checkbox-input-]"
                page.wait_for_selector(tiles, state="attached")

                # The operator browser lists the operator.
                page.keyboard.press("`")
                page.get_by_placeholder("Search operations by name...").fill("ActiveFT")
                entry = page.get_by_text("ActiveFT: select samples to annotate")
                entry.wait_for()
                entry.click()

                # The form shows the target size; a budget larger than the target is refused with the reason.
                page.get_by_text(f"Target: {N} samples").wait_for()
                budget = page.locator(
                    "xpath=//p[text()='Budget']/ancestor::div[contains(@class,'MuiGrid-item')][1]//input")
                budget.fill(str(N + 1))
                page.get_by_text(f"larger than the {N}").first.wait_for()
                execute = page.get_by_role("button", name="Execute", exact=True)
                sync_api.expect(execute).to_be_disabled()
                page.screenshot(path=str(tmp_path / "form-error.png"))

                budget.fill("4")
                page.get_by_text("Budget: 4 samples").wait_for()
                sync_api.expect(execute).to_be_enabled()
                execute.click()

                # The run record is written last: once it holds the picks, tags, ranks and the view are there.
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and len((aft.get_run(dataset) or {}).get("sample_ids", [])) != 4:
                    time.sleep(1)
                    dataset.reload()
                assert dataset.count_sample_tags() == {"activeft": 4}
                ranked = dataset.load_saved_view("activeft")
                assert ranked.values("activeft_rank") == [1, 2, 3, 4]

                # The App then shows the selected samples (the ranked view) and says what it did.
                page.get_by_text("ActiveFT selected 4 of 30 samples").wait_for()
                page.wait_for_function(f"document.querySelectorAll('{tiles}').length === 4")
                shot = tmp_path / "app-after-run.png"
                page.screenshot(path=str(shot))
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        _stop(server)
        log.close()
        dataset.delete()
