"""FiftyOne ↔ Label Studio sync, against a real FiftyOne database and a real Label Studio server.

The images are real PNG files (under the server's local-files root), embedded
once by the real EfficientNet-Lite0 encoder and stored in a vector field, so
each test's selection is a real ActiveFT run on real features.  Annotations
are made through Label Studio's own API, the way its UI stores them.  The
fault tests kill the push process with SIGKILL, stop and restart the server,
and delete tasks and samples.
"""

import os
import signal
import subprocess
import sys
import time

import fiftyone_env as env  # noqa: I001 - must come before fiftyone
import pytest

pytest.importorskip("label_studio_sdk")
pytest.importorskip("label_studio")

import fiftyone as fo  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from activeft_label import sync  # noqa: E402
from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import labelstudio as ls  # noqa: E402
from activeft_label.embeddings import embed_images  # noqa: E402
from activeft_label.errors import InputError  # noqa: E402

from labelstudio_server import LabelStudioServer  # noqa: E402

N_IMAGES = 60
GROUPS = ("a", "b", "c", "d", "e")
FAST = dict(embeddings_field="emb", iterations=30)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = LabelStudioServer(tmp_path_factory.mktemp("labelstudio-sync"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def conn(server):
    connection = ls.connect(server.url, server.personal_token)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def base(server):
    """60 real PNGs under the server's local-files root, with their real embeddings ('emb') and group ('group')."""
    folder = os.path.join(server.local_files_root, "sync-images")
    paths = env.write_images(folder, N_IMAGES, seed=5)
    embedded = embed_images(paths, cache_dir=False, progress=False)
    assert embedded.features.shape[0] == N_IMAGES
    dataset = fo.Dataset(env.unique_name("activeft-sync-base"))
    dataset.add_samples([fo.Sample(filepath=p, emb=v, group=GROUPS[i % len(GROUPS)])
                         for i, (p, v) in enumerate(zip(paths, embedded.features))])
    yield dataset
    dataset.delete()


@pytest.fixture
def ds(base):
    copy = base.clone(env.unique_name())
    yield copy
    copy.delete()


_titles = iter(range(10**6))


def _title():
    return f"sync test {next(_titles)} {os.getpid()}"


def _push(ds, conn, budget=12, **kwargs):
    kwargs.setdefault("selection_options", dict(FAST))
    kwargs.setdefault("progress", False)
    if "project_id" not in kwargs:
        kwargs.setdefault("title", _title())
        kwargs.setdefault("labels", ",".join(GROUPS))
    return sync.push(ds, conn, budget, **kwargs)


def _tasks(conn, project_id):
    return ls.pull_tasks(conn, project_id)


def _annotate(conn, task_id, choice=None, cancelled=False, result=None):
    if result is None:
        result = [] if cancelled else [{"from_name": "label", "to_name": "image", "type": "choices",
                                        "value": {"choices": [choice]}}]
    return conn.client.annotations.create(id=int(task_id), result=result, was_cancelled=cancelled)


def _check_one_task_per_sample(ds, conn, project_id, expected_ids):
    """Exactly one task per expected sample, and each sample's stored task id points at its own task."""
    tasks = _tasks(conn, project_id)
    stable = [t["data"].get(ls.ID_FIELD) for t in tasks]
    assert sorted(stable) == sorted(expected_ids), "tasks and selected samples differ (duplicates or missing)"
    by_task = {t["id"]: t["data"][ls.ID_FIELD] for t in tasks}
    stored = dict(zip(*ds.select(expected_ids).values(["id", sync.TASK_FIELD])))
    assert {sid: by_task.get(tid) for sid, tid in stored.items()} == {sid: sid for sid in expected_ids}
    return tasks


# --------------------------------------------------------------------------------------------------------------
# Push, pull, status


def test_push_queues_selection_in_rank_order_and_maps_samples_to_tasks(ds, conn, server):
    result = _push(ds, conn, 12, images="local-files", document_root=server.local_files_root)
    assert not result.reused and result.selected == 12 and result.created == 12 and result.uploaded == 0
    run = ds.get_run_info("activeft")
    assert run is not None
    selected = list(ds.load_saved_view("activeft").values("id"))  # rank order
    tasks = _check_one_task_per_sample(ds, conn, result.project_id, selected)
    rank_of = {t["data"][ls.ID_FIELD]: t["data"][ls.RANK_FIELD] for t in tasks}
    assert [rank_of[sid] for sid in selected] == list(range(1, 13))
    # Tasks were imported in rank order: task ids ascend with rank (what "Sequential sampling" serves).
    task_of = dict(zip(*ds.select(selected).values(["id", sync.TASK_FIELD])))
    assert [task_of[sid] for sid in selected] == sorted(task_of.values())
    # The task's image is the sample's file.
    path_of = dict(zip(*ds.values(["id", "filepath"])))
    for task in tasks:
        ref = task["data"]["image"]
        assert ref.startswith("/data/local-files/?d=")
        assert path_of[task["data"][ls.ID_FIELD]].endswith(ref.split("?d=")[1].split("/", 1)[1])
    assert set(ds.match_tags("activeft").values("id")) == set(selected)

    again = _push(ds, conn, None, project_id=result.project_id)  # no budget: the run is reused
    assert again.reused and again.created == 0 and again.updated == 0 and again.unchanged == 12
    _check_one_task_per_sample(ds, conn, result.project_id, selected)


def test_pull_maps_labels_by_sample_id_latest_annotation_wins_and_is_idempotent(ds, conn):
    result = _push(ds, conn, 12)
    tasks = _tasks(conn, result.project_id)
    group_of = dict(zip(*ds.values(["id", "group"])))
    # Annotate each task with its own sample's group: a label on the wrong sample is then visible.
    annotated = tasks[:8]
    for task in annotated:
        _annotate(conn, task["id"], group_of[task["data"][ls.ID_FIELD]])
    several, skipped, late_skip = tasks[0], tasks[8], tasks[1]
    wrong = "a" if group_of[several["data"][ls.ID_FIELD]] != "a" else "b"
    time.sleep(0.01)
    _annotate(conn, several["id"], wrong)                     # a newer annotation: it counts
    _annotate(conn, skipped["id"], cancelled=True)            # skipped by the annotator: no label
    _annotate(conn, late_skip["id"], cancelled=True)          # a later skip does not undo a real annotation
    existing = ds[tasks[2]["data"][ls.ID_FIELD]]              # a label that is not ours, already there
    existing["ground_truth"] = fo.Classification(label="mine")
    existing.save()

    pulled = sync.pull(ds, conn, result.project_id, "ground_truth")
    assert pulled.kind == "classification" and pulled.control == "label"
    assert sorted(pulled.several) == sorted([several["id"], late_skip["id"]])
    assert pulled.cancelled == [skipped["id"]]
    assert pulled.conflicts == [tasks[2]["data"][ls.ID_FIELD]]
    assert len(pulled.written) == 7 and pulled.annotated == 8
    labels = dict(zip(*ds.values(["id", "ground_truth"])))
    for task in annotated:
        sid = task["data"][ls.ID_FIELD]
        label = labels[sid]
        if task is several:
            right = wrong
        elif task["id"] == tasks[2]["id"]:
            assert label.label == "mine" and not label.has_field("ls_task_id")  # not ours: kept
            continue
        else:
            right = group_of[sid]
        assert label.label == right, f"sample {sid} got {label.label}, its task said {right}"
        assert label.ls_task_id == task["id"]
    assert labels[skipped["data"][ls.ID_FIELD]] is None
    unannotated = [t["data"][ls.ID_FIELD] for t in tasks[9:]]
    assert all(labels[sid] is None for sid in unannotated)
    assert sum(label is not None for label in labels.values()) == 8  # nothing else touched

    before = env.snapshot(ds)
    second = sync.pull(ds, conn, result.project_id, "ground_truth")
    assert second.written == [] and len(second.unchanged) == 7
    assert env.snapshot(ds) == before

    forced = sync.pull(ds, conn, result.project_id, "ground_truth", overwrite=True)
    assert forced.written == [tasks[2]["data"][ls.ID_FIELD]]
    assert ds[tasks[2]["data"][ls.ID_FIELD]]["ground_truth"].label == group_of[tasks[2]["data"][ls.ID_FIELD]]

    rows = sync.status(ds, conn, result.project_id)
    assert [(r.round, r.selected, r.pushed, r.annotated, r.pulled) for r in rows] == [
        (1, 12, 12, 8, 8), ("total", 12, 12, 8, 8)]


def test_detection_boxes_convert_from_percent_to_relative(ds, conn):
    result = _push(ds, conn, 4, task="detection")
    tasks = _tasks(conn, result.project_id)
    box = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 48,
           "original_height": 48}
    _annotate(conn, tasks[0]["id"], result=[
        {**box, "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0, "rectanglelabels": ["a"]}},
        {**box, "value": {"x": 50, "y": 5, "width": 25, "height": 50, "rotation": 0, "rectanglelabels": ["c"]}}])
    _annotate(conn, tasks[1]["id"], result=[])  # submitted with no boxes: "nothing to label here"
    _annotate(conn, tasks[2]["id"], result=[
        {**box, "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 30, "rectanglelabels": ["b"]}}])
    pulled = sync.pull(ds, conn, result.project_id, "boxes")
    assert pulled.kind == "detection" and len(pulled.written) == 3
    assert any("rotated" in p for p in pulled.problems)
    first = ds[tasks[0]["data"][ls.ID_FIELD]]["boxes"]
    assert isinstance(first, fo.Detections)
    got = sorted((d.label, [round(v, 6) for v in d.bounding_box]) for d in first.detections)
    assert got == [("a", [0.1, 0.2, 0.3, 0.4]), ("c", [0.5, 0.05, 0.25, 0.5])]
    assert ds[tasks[1]["data"][ls.ID_FIELD]]["boxes"].detections == []
    assert ds[tasks[2]["data"][ls.ID_FIELD]]["boxes"].detections == []  # the rotated box is left out, and said so
    # A Choices project (the same samples pushed again) pulled into this Detections field: refused.
    choices_project = _push(ds, conn, None, task_field="ls_tasks_choices")
    before = env.snapshot(ds)
    with pytest.raises(InputError, match="holds Detections"):
        sync.pull(ds, conn, choices_project.project_id, "boxes")
    assert env.snapshot(ds) == before


def test_round_two_fixes_queued_samples_and_appends_after_them(ds, conn, server):
    first = _push(ds, conn, 10, images="local-files", document_root=server.local_files_root)
    round_one = list(ds.load_saved_view("activeft").values("id"))
    tasks = _tasks(conn, first.project_id)
    for task in tasks[:4]:
        _annotate(conn, task["id"], "a")
    second = _push(ds, conn, 8, project_id=first.project_id, round_number=2)
    assert second.run_name == "activeft_round2" and second.selected == 8 and second.queued == 18
    assert second.uploaded == 0  # round 1's document root is remembered: local files again, nothing uploaded
    round_two = list(ds.load_saved_view("activeft_round2").values("id"))
    assert not set(round_one) & set(round_two)
    run = fo_run(ds, "activeft_round2")
    assert run["fixed"] == 10  # every queued sample was a fixed centroid
    tasks = _check_one_task_per_sample(ds, conn, first.project_id, round_one + round_two)
    rank_of = {t["data"][ls.ID_FIELD]: t["data"][ls.RANK_FIELD] for t in tasks}
    assert [rank_of[s] for s in round_one] == list(range(1, 11))
    assert [rank_of[s] for s in round_two] == list(range(11, 19))
    ranks = dict(zip(*ds.values(["id", "activeft_rank"])))
    assert [ranks[s] for s in round_two] == list(range(11, 19))
    assert set(ds.match_tags("activeft").values("id")) == set(round_one + round_two)
    rows = sync.status(ds, conn, first.project_id)
    assert [(r.round, r.selected, r.pushed, r.annotated) for r in rows] == [
        (1, 10, 10, 4), (2, 8, 8, 0), ("total", 18, 18, 4)]
    with pytest.raises(InputError, match=r"round 4 needs round\(s\) 3"):
        _push(ds, conn, 5, project_id=first.project_id, round_number=4)


def fo_run(ds, name):
    from activeft_label.connectors import fiftyone as fo_connector

    return fo_connector.get_run(ds, name)


def test_bad_input_is_refused_before_anything_is_written(ds, conn):
    before = env.snapshot(ds)
    with pytest.raises(InputError, match="either --project"):
        sync.push(ds, conn, 5, progress=False)
    with pytest.raises(InputError, match="no project titled"):
        sync.push(ds, conn, 5, title=_title(), progress=False)
    with pytest.raises(InputError, match="no project 987654"):
        sync.push(ds, conn, 5, project_id=987654, progress=False)
    with pytest.raises(InputError, match="round 2 needs"):
        _push(ds, conn, 5, round_number=2)
    with pytest.raises(InputError, match="budget"):
        _push(ds, conn, N_IMAGES + 1)
    assert env.snapshot(ds) == before
    assert not ls.find_project(conn, "sync test never")


# --------------------------------------------------------------------------------------------------------------
# Faults


def _cli_environment(server):
    environment = dict(os.environ)
    environment.update({"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.personal_token,
                        "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
                            [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             environment.get("PYTHONPATH", "")])})
    return environment


def _push_command(ds, title, budget, batch):
    return [sys.executable, "-m", "activeft_label.cli", "sync", "push", "-d", ds.name, "--title", title,
            "--labels", ",".join(GROUPS), "-b", str(budget), "--embeddings-field", "emb", "--iters", "30",
            "--images", "upload", "--import-batch", str(batch), "-q"]


def test_push_killed_midway_then_rerun_gives_exactly_budget_tasks(ds, conn, server):
    ds.persistent = True  # the child process opens it by name
    title, budget = _title(), 40
    command = _push_command(ds, title, budget, batch=2)
    child = subprocess.Popen(command, env=_cli_environment(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = 0, time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        found = ls.find_project(conn, title)
        seen = len(_tasks(conn, found[0]["id"])) if found else 0
        if seen >= 4:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"the push ended before it could be killed: {child.communicate()}"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    project_id = ls.find_project(conn, title)[0]["id"]
    partial = len(_tasks(conn, project_id))
    assert 0 < partial < budget

    done = subprocess.run(command, env=_cli_environment(server), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "reused the selection run" in done.stdout
    ds.reload()  # written by the child processes
    selected = list(ds.load_saved_view("activeft").values("id"))
    assert len(selected) == budget
    tasks = _check_one_task_per_sample(ds, conn, project_id, selected)
    assert len(tasks) == budget
    assert len(ls.find_project(conn, title)) == 1


def test_server_stopped_midway_fails_clearly_and_rerun_completes(tmp_path, base):
    own = LabelStudioServer(tmp_path / "ls")
    own.start()
    dataset = base.clone(env.unique_name())
    dataset.persistent = True
    try:
        # The images must be readable by this process only (they are uploaded).
        title, budget = _title(), 30
        command = _push_command(dataset, title, budget, batch=2)
        child = subprocess.Popen(command, env=_cli_environment(own), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        with ls.connect(own.url, own.personal_token) as watcher:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and child.poll() is None:
                found = ls.find_project(watcher, title)
                if found and len(_tasks(watcher, found[0]["id"])) >= 4:
                    break
                time.sleep(0.05)
        assert child.poll() is None, "the push ended before the server could be stopped"
        own.stop()
        out, err = child.communicate(timeout=300)
        assert child.returncode in (0, 1), err
        assert "Traceback" not in err
        if child.returncode == 1:
            assert "Label Studio" in err and "127.0.0.1" in err
            assert own.personal_token not in err
        own.start()
        environment = _cli_environment(own)
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        dataset.reload()  # written by the child processes
        with ls.connect(own.url, own.personal_token) as conn:
            project_id = ls.find_project(conn, title)[0]["id"]
            selected = list(dataset.load_saved_view("activeft").values("id"))
            _check_one_task_per_sample(dataset, conn, project_id, selected)
            assert len(selected) == budget
    finally:
        own.stop()
        dataset.delete()


def test_a_project_without_an_image_tag_is_refused_before_anything_is_written(ds, conn):
    text_only = ls.create_project(conn, _title(), '<View><Text name="t" value="$text"/>'
                                                  '<Choices name="c" toName="t"><Choice value="x"/></Choices></View>')
    with pytest.raises(InputError, match="no <Image.*Labeling Setup"):
        _push(ds, conn, 5, project_id=text_only["id"])
    assert len(ds.match_tags("activeft")) == 0 and "activeft" not in ds.list_runs()
    assert sync.STATE_KEY not in ds.info and not _tasks(conn, text_only["id"])


def test_local_files_outside_the_root_are_refused_before_anything_is_written(ds, conn, tmp_path):
    title = _title()
    before = env.snapshot(ds)
    with pytest.raises(InputError, match="is not under the local-files document root"):
        _push(ds, conn, 3, title=title, images="local-files", document_root=str(tmp_path))
    with pytest.raises(InputError, match="is not a folder"):
        _push(ds, conn, 3, title=title, images="local-files", document_root=str(tmp_path / "missing"))
    assert env.snapshot(ds) == before and sync.STATE_KEY not in ds.info
    assert not ls.find_project(conn, title)


def test_an_overlong_title_is_refused_before_anything_is_written(ds, conn):
    before = env.snapshot(ds)
    with pytest.raises(InputError, match="at most 50"):
        _push(ds, conn, 3, title="x" * 51)
    assert env.snapshot(ds) == before


def test_pull_refuses_a_project_never_pushed_and_an_unknown_task_field(ds, conn):
    never = ls.create_project(conn, _title(), ls.label_config(",".join(GROUPS)))
    with pytest.raises(InputError, match="has not been pushed to Label Studio project"):
        sync.pull(ds, conn, never["id"], "ground_truth")
    pushed = _push(ds, conn, 4)
    with pytest.raises(InputError, match="no field 'nope'.*stored its task ids in 'activeft_ls_task'"):
        sync.pull(ds, conn, pushed.project_id, "ground_truth", task_field="nope")
    assert "ground_truth" not in ds.get_field_schema()


def test_pull_finds_the_task_field_the_push_used(ds, conn):
    result = _push(ds, conn, 6, task_field="ls_tasks_birds")
    assert sync.TASK_FIELD not in ds.get_field_schema() and "ls_tasks_birds" in ds.get_field_schema()
    tasks = _tasks(conn, result.project_id)
    _annotate(conn, tasks[1]["id"], "b")
    conn.client.tasks.delete(id=str(tasks[0]["id"]))

    pulled = sync.pull(ds, conn, result.project_id, "ground_truth")        # no task_field given
    assert pulled.deleted_tasks == [tasks[0]["data"][ls.ID_FIELD]]
    assert len(pulled.written) == 1
    with pytest.raises(InputError, match="ls_tasks_birds"):               # the push's field is not a label field
        sync.pull(ds, conn, result.project_id, "ls_tasks_birds")


def test_deleted_task_and_deleted_sample_are_reported_and_the_rest_proceeds(ds, conn):
    result = _push(ds, conn, 10)
    tasks = _tasks(conn, result.project_id)
    for task in tasks:
        _annotate(conn, task["id"], "a")
    gone_task, gone_sample_task = tasks[0], tasks[1]
    conn.client.tasks.delete(id=str(gone_task["id"]))
    ds.delete_samples([gone_sample_task["data"][ls.ID_FIELD]])

    pulled = sync.pull(ds, conn, result.project_id, "ground_truth")
    assert pulled.deleted_tasks == [gone_task["data"][ls.ID_FIELD]]
    assert pulled.missing_samples == [gone_sample_task["id"]]
    assert len(pulled.written) == 8

    again = _push(ds, conn, None, project_id=result.project_id)
    assert again.missing_samples == [gone_sample_task["data"][ls.ID_FIELD]]
    assert again.recreated == 1 and again.created == 1
    remaining = [sid for sid in ds.load_saved_view("activeft").values("id")]
    assert len(remaining) == 9
    tasks_now = _tasks(conn, result.project_id)
    ranked = [t for t in tasks_now if ls.RANK_FIELD in t["data"]]
    assert sorted(t["data"][ls.ID_FIELD] for t in ranked) == sorted(remaining)
    stored = dict(zip(*ds.select(remaining).values(["id", sync.TASK_FIELD])))
    by_task = {t["id"]: t["data"][ls.ID_FIELD] for t in tasks_now}
    assert all(by_task[tid] == sid for sid, tid in stored.items())


# --------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_push_pull_status_round_trip(ds, conn, server):
    runner = CliRunner()
    env_vars = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.legacy_token}
    title = _title()
    pushed = runner.invoke(main, ["sync", "push", "-d", ds.name, "--title", title, "--labels", "a,b,c,d,e", "-b",
                                  "6", "--embeddings-field", "emb", "--iters", "30", "-q"], env=env_vars)
    assert pushed.exit_code == 0, pushed.output
    assert "6 samples queued" in pushed.output and server.legacy_token not in pushed.output
    project_id = ls.find_project(conn, title)[0]["id"]
    for task in _tasks(conn, project_id)[:3]:
        _annotate(conn, task["id"], "b")
    pulled = runner.invoke(main, ["sync", "pull", "-d", ds.name, "-p", str(project_id), "-f", "gt"], env=env_vars)
    assert pulled.exit_code == 0, pulled.output
    assert "3 label(s) written to 'gt'" in pulled.output
    shown = runner.invoke(main, ["sync", "status", "-d", ds.name, "-p", str(project_id)], env=env_vars)
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.output.strip().splitlines()]
    assert lines[0] == ["round", "run", "selected", "pushed", "annotated", "pulled"]
    assert lines[1] == ["1", "activeft", "6", "6", "3", "3"]


@pytest.mark.parametrize("args, message", [
    (["push", "-b", "5"], "either --project"),
    (["push", "-b", "5", "-p", "1", "--title", "both"], "either --project"),
    (["push", "-b", "5", "-p", "987654"], "no project 987654"),
    (["push", "-b", "five", "--title", "x y z", "--labels", "a"], "budget"),
    (["pull", "-p", "987654", "-f", "gt"], "no project 987654"),
    (["pull", "-p", "1", "-f", "filepath"], "manages"),
    (["status", "-p", "987654"], "no project 987654"),
])
def test_cli_bad_input_exits_2_with_one_line(ds, server, args, message):
    runner = CliRunner()
    out = runner.invoke(main, ["sync", args[0], "-d", ds.name, *args[1:]],
                        env={"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.personal_token})
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    assert server.personal_token not in out.output


# --------------------------------------------------------------------------------------------------------------
# App operators (through FiftyOne's operator executor, secrets from the environment as in open-source FiftyOne)


@pytest.fixture
def plugin_installed(monkeypatch, server):
    import shutil

    target = os.path.join(fo.config.plugins_dir, "activeft-label")
    shutil.rmtree(target, ignore_errors=True)
    out = CliRunner().invoke(main, ["fiftyone", "install-plugin"])
    assert out.exit_code == 0, out.output
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.personal_token)
    return target


def test_app_operators_push_and_pull(ds, conn, plugin_installed, monkeypatch):
    import fiftyone.operators as foo

    from activeft_label.app.progress import shown_results

    title = _title()
    pushed = foo.execute_operator("@activeft/activeft-label/push_to_labelstudio", ctx={
        "dataset": ds, "view": ds.view(), "params": {"title": title, "labels": "a,b,c,d,e", "budget": "5",
                                                     "embeddings_field": "emb"}})
    assert pushed.error is None, pushed.error
    # An immediate run is a generator (its progress reaches the App): its result is what it showed.
    shown = shown_results(pushed)
    assert shown["queued"] == 5 and shown["created"] == 5
    steps = [r["params"] for r in pushed.executor.to_json()["requests"] if r["operator_uri"] == "set_progress"]
    assert any("5 of 5" in step["label"] for step in steps), steps    # images / tasks done out of the total
    project_id = shown["project_id"]
    selected = list(ds.load_saved_view("activeft").values("id"))
    tasks = _check_one_task_per_sample(ds, conn, project_id, selected)
    for task in tasks[:2]:
        _annotate(conn, task["id"], "c")
    pulled = foo.execute_operator("@activeft/activeft-label/pull_from_labelstudio", ctx={
        "dataset": ds, "view": ds.view(), "params": {"project_id": project_id, "label_field": "gt"}})
    assert pulled.error is None, pulled.error
    assert shown_results(pulled)["written"] == 2
    steps = [r["params"] for r in pulled.executor.to_json()["requests"] if r["operator_uri"] == "set_progress"]
    assert any(step["label"] == "read 5 of 5 tasks with their annotations" for step in steps), steps
    assert sorted(label.label for label in ds.exists("gt").values("gt")) == ["c", "c"]
    assert server_secret_absent(pushed, pulled)

    from fiftyone.operators.executor import ExecutionError

    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(ExecutionError, match="set the plugin secrets LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        foo.execute_operator("@activeft/activeft-label/pull_from_labelstudio", ctx={
            "dataset": ds, "view": ds.view(), "params": {"project_id": project_id, "label_field": "gt"}})


def test_app_push_form_offers_reselect_and_reselecting_replaces_the_round(ds, conn, plugin_installed):
    import asyncio
    import json

    import fiftyone.operators as foo
    from bson import json_util
    from fiftyone.operators.executor import ExecutionError, resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    from activeft_label.app.progress import shown_results

    uri = "@activeft/activeft-label/push_to_labelstudio"
    stages = json.loads(json_util.dumps(ds.view()._serialize()))
    form = asyncio.run(resolve_type(OperatorRegistry(), uri, {"dataset_name": ds.name, "view": stages,
                                                              "params": {}})).to_json()
    assert "reselect" in form["type"]["properties"] and "task_field" in form["type"]["properties"]

    params = {"title": _title(), "labels": ",".join(GROUPS), "budget": "5", "embeddings_field": "emb"}
    first = foo.execute_operator(uri, ctx={"dataset": ds, "view": ds.view(), "params": params})
    assert first.error is None, first.error
    project_id = shown_results(first)["project_id"]
    before = set(ds.match_tags("activeft").values("id"))
    again = {"project_id": project_id, "budget": "8", "embeddings_field": "emb"}
    with pytest.raises(ExecutionError, match="already selected 5 samples.*tick 'Select this round again'"):
        foo.execute_operator(uri, ctx={"dataset": ds, "view": ds.view(), "params": again})
    assert len(_tasks(conn, project_id)) == 5                      # the refused push wrote nothing

    redone = foo.execute_operator(uri, ctx={"dataset": ds, "view": ds.view(), "params": dict(again, reselect=True)})
    assert redone.error is None, redone.error
    redone = shown_results(redone)
    assert redone["selected"] == 8 and redone["queued"] == 8 and not redone["reused"]
    after = list(ds.load_saved_view("activeft").values("id"))      # rank order
    assert set(ds.match_tags("activeft").values("id")) == set(after) and len(after) == 8
    rank_of = {t["data"][ls.ID_FIELD]: t["data"].get(ls.RANK_FIELD) for t in _tasks(conn, project_id)}
    assert [rank_of[sid] for sid in after] == list(range(1, 9))
    dropped = before - set(after)
    assert all(rank_of[sid] is None for sid in dropped)             # no two tasks share a rank
    assert redone["cleared"] == len(dropped) > 0
    assert f"{len(dropped)} no longer in the queue" in redone["message"]
    assert len(rank_of) == len(before | set(after))                 # nothing duplicated


def server_secret_absent(*results):
    """The API key is in no result and in no request the run sent the App (progress, output, notifications)."""
    import json

    key = os.environ.get("LABEL_STUDIO_API_KEY", "")
    return all(key not in repr(r.result) and key not in json.dumps(r.executor.to_json() if r.executor else None)
               for r in results)


def test_an_existing_project_with_another_label_config_is_refused(ds, conn):
    first = _push(ds, conn, 4)
    title = ls.get_project(conn, first.project_id)["title"]
    before = len(_tasks(conn, first.project_id))
    with pytest.raises(InputError, match="another label config.*choose another --title"):
        sync.push(ds, conn, None, title=title, labels="x,y", progress=False)
    with pytest.raises(InputError, match="another label config.*leave out --labels"):
        sync.push(ds, conn, None, project_id=first.project_id, labels="a,b,c,d,e", task="detection", progress=False)
    same = sync.push(ds, conn, None, title=title, labels=",".join(GROUPS), progress=False)
    assert same.project_id == first.project_id and same.created == 0
    assert len(_tasks(conn, first.project_id)) == before
    with pytest.raises(InputError, match="another label config"):
        ls.open_project(conn, title, "x,y")


# --------------------------------------------------------------------------------------------------------------
# Integrity: a pushed run is held, a queue that names a sample twice is refused before anything is sent, and
# a queue left that way by an earlier version is repaired by the tool's own commands.


def _two_rounds(ds, conn):
    """Round 1 (20 tasks, 3 annotated) and round 2 (10 tasks) pushed to one project; returns (project id, r1 ids)."""
    first = _push(ds, conn, 20, images="upload")
    tasks = _tasks(conn, first.project_id)
    for task in tasks[:3]:
        _annotate(conn, task["id"], "a")
    second = _push(ds, conn, 10, project_id=first.project_id, round_number=2, images="upload")
    assert second.queued == 30 and second.created == 10
    from activeft_label.connectors import fiftyone as fo_connector

    return first.project_id, list(fo_connector.get_run(ds, "activeft")["sample_ids"])


def test_fiftyones_own_delete_run_of_a_pushed_run_cleans_up_as_with_force_and_warns(ds, conn, caplog):
    """FiftyOne's delete_run cannot refuse: a pushed run is cleaned up as `delete-run --force` does, with a warning."""
    import logging

    from activeft_label.connectors import fiftyone as fo_connector

    pushed = _push(ds, conn, 6)
    assert fo_connector.run_holds(ds, "activeft")                          # the push holds its run
    refused = CliRunner().invoke(main, ["fiftyone", "delete-run", "activeft", "-d", ds.name])
    assert refused.exit_code == 2 and "--force" in refused.output        # the command line still refuses

    with caplog.at_level(logging.WARNING, logger="activeft_label"):
        ds.delete_run("activeft")
    assert any(f"project {pushed.project_id}" in r.getMessage() and "tasks stay" in r.getMessage()
               for r in caplog.records), caplog.text
    ds.reload()
    assert ds.list_runs() == [] and "activeft" not in ds.list_saved_views()
    assert ds.count_sample_tags() == {} and ds.count("activeft_rank") == 0
    assert fo_connector.run_holds(ds, "activeft") == []
    assert len(_tasks(conn, pushed.project_id)) == 6                       # the tasks stay in Label Studio


def _ranks(conn, project_id):
    return [t["data"].get(ls.RANK_FIELD) for t in _tasks(conn, project_id) if t["data"].get(ls.RANK_FIELD) is not None]


def test_a_pushed_run_is_not_selected_again_by_the_cli_python_or_the_app(ds, conn, plugin_installed):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    from activeft_label.connectors import fiftyone as fo_connector

    project_id, round_one = _two_rounds(ds, conn)
    runner = CliRunner()
    select = ["fiftyone", "select", "-d", ds.name, "-b", "15", "--embeddings-field", "emb", "--iters", "30", "-q"]
    for extra in ([], ["--replace"]):
        out = runner.invoke(main, select + extra)
        assert out.exit_code == 2, out.output
        assert "was pushed" in out.output and f"project {project_id}" in out.output and "round(s) 2" in out.output
        assert "Traceback" not in out.output
    with pytest.raises(InputError, match="round.s. 2 were selected after it"):
        fo_connector.select_samples(ds, 15, embeddings_field="emb", iterations=30, replace=True)
    with pytest.raises(ExecutionError, match="was pushed"):
        foo.execute_operator("@activeft/activeft-label/select_samples", ctx={
            "dataset": ds, "view": ds.view(), "params": {"budget": "15", "embeddings_field": "emb",
                                                         "replace": True}})
    deleted = runner.invoke(main, ["fiftyone", "delete-run", "activeft", "-d", ds.name])
    assert deleted.exit_code == 2 and "--force" in deleted.output, deleted.output

    ds.reload()
    assert fo_connector.get_run(ds, "activeft")["sample_ids"] == round_one      # nothing was replaced
    again = _push(ds, conn, None, project_id=project_id)
    assert again.reused and again.created == 0 and again.queued == 30
    ranks = _ranks(conn, project_id)
    assert len(ranks) == 30 and len(set(ranks)) == 30

    # The last round is not depended on: sync push --reselect selects it again, explicitly.
    redone = _push(ds, conn, 10, project_id=project_id, round_number=2, reselect=True, images="upload")
    assert not redone.reused and redone.selected == 10
    ranks = _ranks(conn, project_id)
    assert len(ranks) == len(set(ranks)) == 30


def test_a_queue_naming_a_sample_twice_is_refused_before_any_upload_and_repaired(ds, conn, server):
    from activeft_label.connectors import fiftyone as fo_connector

    project_id, _ = _two_rounds(ds, conn)
    round_two = set(fo_connector.get_run(ds, "activeft_round2")["sample_ids"])
    # What an earlier version allowed: round 1's run selected again over round 2 (no holds were recorded then).
    ds.info.pop(fo_connector.HOLDS_KEY)
    ds.save()
    # (Its own rank field: today a run may not overwrite the ranks round 2's run owns.)
    replaced = fo_connector.select_samples(ds, 55, embeddings_field="emb", iterations=30, rank_field="again_rank")
    overlap = set(replaced.sample_ids) & round_two
    assert overlap                                     # 55 + 10 > 60: the new round 1 shares samples with round 2
    before = _tasks(conn, project_id)

    with pytest.raises(InputError, match="names samples twice") as refused:
        _push(ds, conn, None, project_id=project_id, images="upload")
    assert "--repair" in str(refused.value) and "rounds 1 and 2" in str(refused.value)
    environment = dict(os.environ, LABEL_STUDIO_URL=server.url, LABEL_STUDIO_API_KEY=server.personal_token)
    out = CliRunner(env=environment).invoke(main, ["sync", "push", "-d", ds.name, "-p", str(project_id), "-q"])
    assert out.exit_code == 2 and "--repair" in out.output and "Traceback" not in out.output, out.output
    after = _tasks(conn, project_id)
    assert [t["id"] for t in after] == [t["id"] for t in before]           # nothing imported, nothing uploaded
    assert [t["data"] for t in after] == [t["data"] for t in before]

    # A queue whose ranks were already doubled (as the earlier version left it) is reported by status ...
    first, second = after[0], after[1]
    conn.client.tasks.update(id=str(second["id"]), data={**second["data"], ls.RANK_FIELD: first["data"][ls.RANK_FIELD]})
    shown = CliRunner(env=environment).invoke(main, ["sync", "status", "-d", ds.name, "-p", str(project_id)])
    assert shown.exit_code == 0, shown.output
    assert "held by more than one task" in shown.output and "--repair" in shown.output

    # ... and repaired by the tool's own command.
    repaired = CliRunner(env=environment).invoke(main, ["sync", "push", "-d", ds.name, "-p", str(project_id),
                                                        "--repair", "-q"])
    assert repaired.exit_code == 0, repaired.output
    ranks = _ranks(conn, project_id)
    assert len(ranks) == len(set(ranks)) == 55 + len(round_two - overlap)
    final = sync.status(ds, conn, project_id)
    assert final.duplicate_ranks == {}
    annotated = [t for t in ls.export_tasks(conn, project_id) if t.get("annotations")]
    assert len(annotated) == 3                          # annotations are never touched


def test_app_errors_name_the_forms_fields_and_the_plugin_secrets_not_command_line_options(ds, plugin_installed,
                                                                                         monkeypatch):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    uri = "@activeft/activeft-label/push_to_labelstudio"
    with pytest.raises(ExecutionError) as neither:
        foo.execute_operator(uri, ctx={"dataset": ds, "view": ds.view(), "params": {"budget": "5"}})
    assert "a project id" in str(neither.value) and "--project" not in str(neither.value)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-a-valid-key-at-all")
    with pytest.raises(ExecutionError) as refused:
        foo.execute_operator(uri, ctx={"dataset": ds, "view": ds.view(), "params": {"project_id": 1}})
    assert "plugin secret LABEL_STUDIO_API_KEY" in str(refused.value) and "--api-key" not in str(refused.value)
    assert "not-a-valid-key-at-all" not in str(refused.value)


def test_a_scheduled_app_run_is_named_for_what_it_does(ds, plugin_installed):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    queued = foo.execute_operator("@activeft/activeft-label/pull_from_labelstudio", ctx={
        "dataset": ds, "view": ds.view(), "request_delegation": True,
        "params": {"project_id": 7, "label_field": "gt"}})
    assert queued.delegated
    service = DelegatedOperationService()
    (op,) = service.list_operations(dataset_name=ds.name)
    try:
        assert op.label == f"ActiveFT: pull project 7 into {ds.name}.gt"
    finally:
        service.delete_operation(op.id)


def test_push_and_pull_report_tasks_and_annotations_done_out_of_total(ds, conn):
    pushed_steps, pulled_steps = [], []
    pushed = _push(ds, conn, 6, images="upload", progress=lambda f, m: pushed_steps.append((f, m)))
    for task in _tasks(conn, pushed.project_id)[:2]:
        _annotate(conn, task["id"], "b")
    sync.pull(ds, conn, pushed.project_id, "gt", progress=lambda f, m: pulled_steps.append((f, m)))
    for steps in (pushed_steps, pulled_steps):
        fractions = [f for f, _ in steps]
        assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    assert any("6 of 6" in m for _, m in pushed_steps), pushed_steps          # images / tasks done out of total
    assert any(m == "read 6 of 6 tasks with their annotations" for _, m in pulled_steps), pulled_steps
    assert pulled_steps[-1] == (1.0, "2 labels written to 'gt'")
