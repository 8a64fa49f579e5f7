"""Benchmark: the ActiveFT ML backend, from "Connect model" to a ranked queue, and one re-rank.

For each size N (default 1,000):

1. a project of N real PNG images (Fashion-MNIST, else scikit-learn digits,
   repeated and mirrored beyond its 1,797) served from local-files storage;
2. **cold**: a backend with an empty cache and state folder
   (``activeft labelstudio serve``, its own process), then the project is
   connected through the SDK (``ml.create``, what "Connect model" sends) and
   the clock runs until the backend reports the ranking published: every
   task has a prediction of the new model version in Label Studio, the
   project's model version is set, the priority view written;
3. **warm**: the backend is stopped, its state folder emptied (the image
   and embedding caches kept), the connection and predictions removed,
   and the same again;
4. **re-rank**: one annotation of the rank-1 task through the API, and the
   clock runs until the new ranking is published (the debounce, 2 s by
   default, is included and also reported apart).

The Label Studio server is started here (``tests/labelstudio_server.py``, with
``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false`` so that it
connects a backend on 127.0.0.1).

Run::

    python bench/ml_backend.py --sizes 1000 --results bench/RESULTS.md
    python bench/ml_backend.py --sizes 1000,10000
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_images(folder, size):
    from activeft_label.files.demo import demo_images, write_pngs

    images, _, _, source = demo_images(size, seed=0)
    if images.shape[0] < size:
        reps = -(-size // images.shape[0])
        images = np.concatenate([images if k % 2 == 0 else images[:, :, ::-1] for k in range(reps)])[:size]
    return write_pngs(images, folder), source


class Backend:
    def __init__(self, url, key, base, port, budget, debounce):
        self.ls_url, self.key, self.base, self.port = url, key, Path(base), port
        self.url = f"http://127.0.0.1:{port}"
        self.budget, self.debounce = budget, debounce
        self.process = None

    def start(self):
        import httpx

        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "ACTIVEFT_"))}
        env.update(LABEL_STUDIO_URL=self.ls_url, LABEL_STUDIO_API_KEY=self.key, HF_HUB_OFFLINE="1",
                   ACTIVEFT_CACHE_DIR=str(self.base / "cache"), PYTHONPATH=str(ROOT))
        log = open(self.base / "backend.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "activeft_label.cli", "labelstudio", "serve", "--port", str(self.port),
             "--budget", self.budget, "--debounce", str(self.debounce), "--state-dir", str(self.base / "state")],
            env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        for _ in range(600):
            try:
                httpx.get(self.url + "/health", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the backend did not start")

    def project(self, pid):
        import httpx

        body = httpx.get(self.url + "/health", timeout=10).json()
        return body["projects"].get(str(pid)) or {}, body.get("busy")

    def wait_published(self, pid, other_than=None, timeout=3600):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry, busy = self.project(pid)
            if (entry.get("status") == "ready" and entry.get("published") and busy is None
                    and entry.get("model_version") not in (None, other_than)):
                return entry
            if entry.get("status") == "error":
                raise RuntimeError(entry.get("error"))
            time.sleep(0.2)
        raise RuntimeError("timed out")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def live_seconds(seconds, entry):
    """When the new queue was live: the predictions and the project's model version in place, the view written
    (before the backend re-read its state in Label Studio and removed the older version's predictions)."""
    phases = entry.get("phases") or {}
    return seconds - phases.get("refresh", 0.0) - phases.get("cleanup", 0.0)


def run_size(server, client, size, workdir, budget, debounce):
    import httpx

    from labelstudio_server import free_port

    root = Path(server.local_files_root)
    folder = root / f"images{size}"
    paths, source = write_images(folder, size)
    project = client.projects.create(title=f"Backend bench {size}", label_config=CONFIG)
    pid = project.id
    client.import_storage.local.create(project=pid, path=str(folder), use_blob_urls=True, title="bench")
    tasks = [{"image": "/data/local-files/?d=" + urllib.parse.quote(os.path.relpath(p, root))} for p in paths]
    for start in range(0, len(tasks), 1000):
        client.projects.import_tasks(id=pid, request=tasks[start:start + 1000])
    base = Path(workdir) / f"backend{size}"
    base.mkdir(parents=True, exist_ok=True)
    backend = Backend(server.url, server.personal_token, base, free_port(), budget, debounce)
    row = {"size": size, "budget": budget, "images": source}
    try:
        for phase in ("cold", "warm"):
            backend.start()
            started = time.perf_counter()
            ml = client.ml.create(url=backend.url, project=pid, title="ActiveFT")  # "Connect model"
            entry = backend.wait_published(pid)
            seconds = time.perf_counter() - started
            row[phase] = {"seconds": seconds, "ranking_seconds": entry["ranking_seconds"],
                          "selected": entry["selected"], "version": entry["model_version"],
                          "job_seconds": (entry.get("last_job") or {}).get("seconds"), "phases": entry.get("phases"),
                          "live": live_seconds(seconds, entry)}
            count = sum(1 for p in client.predictions.list(project=pid) if p.model_version == entry["model_version"])
            row[phase]["predictions"] = count
            print(json.dumps({"size": size, phase: row[phase]}), flush=True)
            if phase == "cold":  # reset for the warm run: same caches, no state, no connection, no predictions
                backend.stop()
                shutil.rmtree(base / "state", ignore_errors=True)
                client.ml.delete(id=ml.id)  # (its webhook stays; the next connection reuses it)
                httpx.request("DELETE", f"{server.url}/api/projects/{pid}/model-versions/",
                              json={"model_version": entry["model_version"]},
                              headers={"Authorization": f"Token {server.legacy_token}"}, timeout=120)
        first = entry["ranked"][0]
        version = entry["model_version"]
        started = time.perf_counter()
        client.annotations.create(id=first, result=[{"from_name": "label", "to_name": "image", "type": "choices",
                                                     "value": {"choices": ["a"]}}])
        again = backend.wait_published(pid, other_than=version)
        seconds = time.perf_counter() - started
        row["rerank"] = {"seconds": seconds, "after_debounce": seconds - debounce,
                         "live": live_seconds(seconds, again), "phases": again.get("phases"),
                         "ranking_seconds": again["ranking_seconds"],
                         "job_seconds": (again.get("last_job") or {}).get("seconds"),
                         "version": again["model_version"], "first_moved": first not in again["ranked"]}
        print(json.dumps({"size": size, "rerank": row["rerank"]}), flush=True)
    finally:
        backend.stop()
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000", help="comma-separated task counts (default 1000)")
    parser.add_argument("--budget", default="10%", help="the backend's --budget (default 10%%)")
    parser.add_argument("--debounce", type=float, default=2.0, help="the backend's --debounce (default 2)")
    parser.add_argument("--workdir", help="folder for the server, images and backends (default: a temp folder)")
    parser.add_argument("--results", help="append a section to this Markdown file (e.g. bench/RESULTS.md)")
    args = parser.parse_args(argv)

    from label_studio_sdk import LabelStudio

    from labelstudio_server import LabelStudioServer

    class Server(LabelStudioServer):
        def environment(self):
            env = super().environment()
            env.update(ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false")
            return env

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="activeft-ml-bench-"))
    server = Server(workdir / "server", local_files_root=workdir / "files")
    print(f"starting Label Studio in {workdir / 'server'} ...", file=sys.stderr)
    server.start()
    rows = []
    try:
        client = LabelStudio(base_url=server.url, api_key=server.legacy_token)
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            rows.append(run_size(server, client, size, workdir, args.budget, args.debounce))
    finally:
        server.stop()

    from importlib.metadata import version

    header = (f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} CPU cores, Python "
              f"{platform.python_version()}, torch {version('torch')}, label-studio {version('label-studio')} "
              f"(sqlite, its dev server, same machine), uvicorn {version('uvicorn')}, starlette "
              f"{version('starlette')}; images: {rows[0]['images'] if rows else '?'}; budget {args.budget}, "
              f"debounce {args.debounce:g} s, encoder efficientnet-lite0, 300 ActiveFT steps.")
    lines = [header, "", "| tasks | selected | connect → ranked queue, cold (s) | of which ranking (s) | "
             "warm (s) | of which ranking (s) | annotation → re-ranked queue (s) | of which ranking (s) | "
             "backend idle again (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cold, warm, rerank = row["cold"], row["warm"], row["rerank"]
        lines.append(f"| {row['size']:,} | {cold['selected']} | {cold['live']:.1f} | {cold['ranking_seconds']:.1f} "
                     f"| {warm['live']:.1f} | {warm['ranking_seconds']:.1f} | {rerank['live']:.1f} | "
                     f"{rerank['ranking_seconds']:.1f} | {rerank['seconds']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write("\n## Label Studio ML backend: connect → ranked queue, and a re-rank\n\n" + table + "\n\n"
                         "Cold: empty image and embedding caches; warm: both kept, no stored ranking. \"Connect → "
                         "ranked queue\" runs from the SDK's `ml.create` (what Settings → Model → Connect model "
                         "sends) until every task has a prediction of the new model version in Label Studio, the "
                         "project's model version is set and the priority view written; \"ranking\" is the "
                         "backend's own part of it (task list, images, embedding, selection), the rest is Label "
                         "Studio's calls (/health, /setup, the prediction imports, the view). Annotation → "
                         f"re-ranked queue: from the annotation's API call, the debounce ({args.debounce:g} s) "
                         "included, until the new ranking is live the same way; \"backend idle again\" adds "
                         "Label Studio re-reading the backend's state and deleting the older version's "
                         "predictions. Command: "
                         f"`python bench/ml_backend.py --sizes {args.sizes}`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
