"""The App operator plugin, run through FiftyOne itself (immediate and delegated), and its form.

The plugin is installed with ``activeft fiftyone install-plugin`` into a
temporary plugins directory and discovered by FiftyOne from there.
"""

import fiftyone_env as env  # noqa: I001  (must come before fiftyone: it sets FiftyOne's environment)

import asyncio
import json
import os
import shutil

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

import fiftyone.operators as foo  # noqa: E402
from bson import json_util  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from fiftyone.operators.delegated import DelegatedOperationService  # noqa: E402
from fiftyone.operators.executor import ExecutionError, resolve_execution_options, resolve_type  # noqa: E402
from fiftyone.operators.registry import OperatorRegistry  # noqa: E402

from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import fiftyone as aft  # noqa: E402
from activeft_label.app.select_operator import LARGE_TO_EMBED  # noqa: E402

URI = "@activeft/activeft-label/select_samples"
N = 40


# One torch thread for this module (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def installed():
    """Install the plugin the way users do; check what the command does on a second install."""
    target = os.path.join(fo.config.plugins_dir, "activeft-label")
    shutil.rmtree(target, ignore_errors=True)  # the test process's own plugins dir (another module may have installed)
    runner = CliRunner()
    result = runner.invoke(main, ["fiftyone", "install-plugin"])
    assert result.exit_code == 0, result.output
    assert os.path.isfile(os.path.join(target, "fiftyone.yml")) and os.path.isfile(os.path.join(target, "__init__.py"))
    again = runner.invoke(main, ["fiftyone", "install-plugin"])
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(main, ["fiftyone", "install-plugin", "--force"])
    assert forced.exit_code == 0, forced.output
    return target


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return env.write_images(str(tmp_path_factory.mktemp("plugin-images")), N, seed=11)


@pytest.fixture
def ds(images):
    """40 real PNGs with 32-d embeddings in 'emb' (two clusters), a fresh dataset per test."""
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(2, 32))
    dataset = fo.Dataset(env.unique_name("activeft-plugin"))
    dataset.add_samples([fo.Sample(filepath=p, emb=centers[i % 2] + 0.3 * rng.normal(size=32))
                         for i, p in enumerate(images)])
    yield dataset
    dataset.delete()


def _request(dataset, view=None, params=None, **extra):
    """Request parameters as the App sends them."""
    stages = json.loads(json_util.dumps((view if view is not None else dataset.view())._serialize()))
    return {"dataset_name": dataset.name, "view": stages, "params": params or {}, **extra}


def _form(dataset, view=None, params=None, **extra):
    prop = asyncio.run(resolve_type(OperatorRegistry(), URI, _request(dataset, view, params, **extra)))
    assert not hasattr(prop, "error") or not prop.error, getattr(prop, "error", None)
    return prop.to_json()


def _text(form):
    return json.dumps(form)


def _invalid(form):
    return {name: p["error_message"] for name, p in form["type"]["properties"].items() if p["invalid"]}


def test_plugin_is_discovered_with_secrets(installed):
    assert URI in [op.uri for op in foo.list_operators()]
    import fiftyone.plugins as fop

    plugin = next(p for p in fop.list_plugins() if p.name == "@activeft/activeft-label")
    assert plugin.secrets == ["LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"]
    assert plugin.operators == ["select_samples", "push_to_labelstudio", "pull_from_labelstudio"]
    listed = [op.uri for op in foo.list_operators()]
    for name in plugin.operators:
        assert f"@activeft/activeft-label/{name}" in listed


def test_execute_on_current_view_writes_tags_ranks_view(installed, ds):
    view = ds.skip(10)  # the App's current view: 30 samples
    foo.execute_operator(URI, ctx={"dataset": ds, "view": view, "params": {"budget": "10%",
                                                                           "embeddings_field": "emb"}})
    ds.reload()
    record = aft.get_run(ds, "activeft")
    selected = record["sample_ids"]
    assert len(selected) == 3 and set(selected) <= set(view.values("id"))
    assert record["target_size"] == 30 and record["budget_spec"] == "10%"
    assert {sid for sid, t in zip(*ds.values(["id", "tags"])) if "activeft" in t} == set(selected)
    ranks = {sid: r for sid, r in zip(*ds.values(["id", "activeft_rank"])) if r is not None}
    assert ranks == {sid: r for r, sid in enumerate(selected, start=1)}
    assert ds.load_saved_view("activeft").values("id") == selected


def test_execute_on_selected_samples_with_own_names(installed, ds):
    chosen = ds.values("id")[5:17]
    foo.execute_operator(URI, ctx={"dataset": ds, "selected": chosen, "params": {
        "view_target": "SELECTED_SAMPLES", "budget": 2, "embeddings_field": "emb", "tag": "pick",
        "rank_field": "priority", "run_name": "picked", "iterations": 50, "seed": 3, "center": True}})
    ds.reload()
    record = aft.get_run(ds, "picked")
    assert record["target_size"] == 12 and record["params"]["iterations"] == 50 and record["params"]["seed"] == 3
    assert record["params"]["center"] is True
    assert set(record["sample_ids"]) <= set(chosen) and len(record["sample_ids"]) == 2
    assert ds.match_tags("pick").count() == 2 and ds.count("priority") == 2 and "activeft_rank" not in \
        ds.get_field_schema()


def test_an_immediate_run_streams_its_progress_then_shows_its_result(installed, ds):
    """What the App receives from an immediate run: set_progress messages in order, then the result (show_output).

    FiftyOne drops a generator operator's return value (``result`` is None), so the result travels in the
    run's own show_output request, which ``shown_results`` reads back for code callers.
    """
    from activeft_label.app.progress import shown_results

    run = foo.execute_operator(URI, ctx={"dataset": ds, "params": {"budget": 4, "embeddings_field": "emb"}})
    assert run.result is None
    requests = run.executor.to_json()["requests"]
    uris = [r["operator_uri"] for r in requests]
    progress = [r["params"] for r in requests if r["operator_uri"] == "set_progress"]
    assert len(progress) >= 3 and all(p.get("label") for p in progress)
    fractions = [p["progress"] for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] <= 1
    assert uris.index("show_output") > max(i for i, u in enumerate(uris) if u == "set_progress")
    shown = shown_results(run)
    assert shown["selected"] == 4 and shown["target_size"] == N and shown["saved_view"] == "activeft"
    outputs = next(r for r in requests if r["operator_uri"] == "show_output")["params"]["outputs"]
    assert set(outputs["type"]["properties"]) >= {"selected", "target_size", "saved_view"}
    assert "notify" in uris and "set_view" in uris
    ds.reload()
    assert len(aft.get_run(ds, "activeft")["sample_ids"]) == 4


def test_the_form_says_how_a_scheduled_run_executes(installed, ds):
    text = _text(_form(ds, params={"budget": "3", "embeddings_field": "emb", "run_name": "later"}))
    assert "fiftyone delegated launch" in text and "Operation successfully scheduled" in text
    assert f"ActiveFT: select 3 of {ds.name} (run 'later')" in text     # the name the worker lists it under


def test_form_shows_target_size_budget_and_problems(installed, ds):
    form = _form(ds, params={"budget": "10%", "embeddings_field": "emb"})
    assert "Target: 40 samples" in _text(form) and "Budget: 4 samples" in _text(form)
    assert _invalid(form) == {}
    props = form["type"]["properties"]
    assert list(props)[0] == "view_target"
    assert props["embeddings_field"]["type"]["values"] == ["emb"]  # the vector fields of the target
    for name in ("budget", "embeddings", "tag", "rank_field", "run_name", "exclude_labeled", "advanced"):
        assert name in props
    advanced = _form(ds, params={"budget": 3, "advanced": True})["type"]["properties"]
    assert {"temperature", "iterations", "seed", "method", "center"} <= set(advanced)
    assert advanced["budget"]["type"]["name"] == "Number"  # a count passed from code keeps its type

    assert "larger than the 40" in _invalid(_form(ds, params={"budget": "41"}))["budget"]
    assert "empty" in " ".join(_invalid(_form(ds, view=ds.limit(0), params={"budget": "1"})).values())
    ids = ds.values("id")
    ds.set_values("emb", {ids[1]: None, ids[2]: None}, key_field="id")
    assert "2 of 40 samples have no value" in _invalid(_form(ds, params={"budget": "3"}))["embeddings_field"]
    ds.set_values("emb", {ids[1]: np.zeros(8), ids[2]: np.ones(32)}, key_field="id")
    assert "mixes vector lengths" in _invalid(_form(ds, params={"budget": "3"}))["embeddings_field"]

    ds.set_values("filepath", {ids[0]: "/nonexistent/activeft/a.png"}, key_field="id")
    model_form = _form(ds, params={"budget": "3", "embeddings": "model"})
    assert "1 of 40 images are missing on disk" in _text(model_form) and _invalid(model_form) == {}
    assert model_form["type"]["properties"]["model"]["default"] == "efficientnet-lite0"


def test_bad_input_refused_by_fiftyone_and_nothing_written(installed, ds):
    before = env.snapshot(ds)
    with pytest.raises(ExecutionError, match="larger than the 40"):
        foo.execute_operator(URI, ctx={"dataset": ds, "params": {"budget": 41, "embeddings_field": "emb"}})
    with pytest.raises(ExecutionError, match="must start with a letter"):
        foo.execute_operator(URI, ctx={"dataset": ds, "params": {"budget": 2, "embeddings_field": "emb",
                                                                 "run_name": "my run"}})
    with pytest.raises(ValueError, match="not found"):
        foo.execute_operator(URI, ctx={"dataset": "no-such-dataset-xyz", "params": {"budget": 2}})
    assert env.snapshot(ds) == before


def test_immediate_runs_start_no_dataloader_workers_in_the_app_server(ds):
    """An immediate run embeds inside the App server's own process: num_workers=0; a delegated run keeps the default."""
    from fiftyone.operators.executor import ExecutionContext

    from activeft_label.app.select_operator import run_options

    params = {"budget": 4, "embeddings": "model"}
    immediate = run_options(ExecutionContext(request_params=_request(ds, params=dict(params))), len(ds))
    delegated = run_options(ExecutionContext(request_params=_request(ds, params=dict(params), delegated=True)),
                            len(ds))
    assert immediate["model"] == delegated["model"] == "efficientnet-lite0"
    assert immediate["num_workers"] == 0 and delegated["num_workers"] is None


def test_delegated_run_is_queued_then_executed(installed, ds):
    from fiftyone.operators.executor import ExecutionRunState

    result = foo.execute_operator(URI, ctx={"dataset": ds, "view": ds.limit(20), "request_delegation": True,
                                            "params": {"budget": "20%", "embeddings_field": "emb",
                                                       "run_name": "background"}})
    assert result.delegated
    assert "background" not in ds.list_runs() and ds.count_sample_tags() == {}  # queued, not run

    service = DelegatedOperationService()
    done = service.execute_queued_operations(dataset_name=ds.name)
    assert len(done) == 1 and not done[0].error, done[0].error
    op = service.list_operations(dataset_name=ds.name)[0]
    assert op.run_state == ExecutionRunState.COMPLETED
    assert op.status.progress == 1.0  # progress was reported along the way
    assert op.result.result["selected"] == 4 and op.result.result["saved_view"] == "background"

    ds.reload()
    selected = ds.load_saved_view("background").values("id")
    assert len(selected) == 4 and set(selected) <= set(ds.limit(20).values("id"))
    assert ds.load_saved_view("background").values("activeft_rank") == [1, 2, 3, 4]
    assert ds.count_sample_tags() == {"activeft": 4}


def test_large_targets_default_to_delegation(installed, ds):
    small = asyncio.run(resolve_execution_options(OperatorRegistry(), URI,
                                                  _request(ds, params={"embeddings": "model"})))
    assert small.allow_delegated_execution and small.allow_immediate_execution
    assert not small.default_choice_to_delegated
    big = fo.Dataset(env.unique_name("activeft-big"))
    try:
        big.add_samples([fo.Sample(filepath=f"/nonexistent/activeft/{i}.png") for i in range(LARGE_TO_EMBED + 1)])
        options = asyncio.run(resolve_execution_options(OperatorRegistry(), URI,
                                                        _request(big, params={"embeddings": "model"})))
        assert options.default_choice_to_delegated
        assert "runs in the background" in _text(_form(big, params={"budget": "1%", "embeddings": "model"}))
    finally:
        big.delete()


def test_the_wheel_carries_the_plugin_and_installs_it_without_a_checkout(tmp_path):
    """Build the wheel, install it into a folder of its own, and install the plugin from those files alone."""
    import subprocess
    import sys
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    wheels, site, plugins, elsewhere = (tmp_path / name for name in ("wheels", "site", "plugins", "elsewhere"))
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), root], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("activeft_label-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"activeft_label/app/plugin/fiftyone.yml", "activeft_label/app/plugin/__init__.py"} <= names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=600)

    environment = dict(os.environ, PYTHONPATH=str(site), FIFTYONE_PLUGINS_DIR=str(plugins))
    script = ("import json, sys\n"
              "import activeft_label\n"
              "from click.testing import CliRunner\n"
              "from activeft_label.cli import main\n"
              "out = CliRunner().invoke(main, ['fiftyone', 'install-plugin', '--plugins-dir', sys.argv[1]])\n"
              "import fiftyone.operators as foo, fiftyone.plugins as fop\n"
              "plugin = next(p for p in fop.list_plugins() if p.name == '@activeft/activeft-label')\n"
              "print(json.dumps({'package': activeft_label.__file__, 'exit': out.exit_code, 'output': out.output,\n"
              "                  'operators': plugin.operators, 'listed': [op.uri for op in foo.list_operators()]}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(plugins)], cwd=elsewhere, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["package"].startswith(str(site)), seen["package"]   # the wheel's files, not the checkout
    assert seen["exit"] == 0, seen["output"]
    assert sorted(os.listdir(plugins / "activeft-label")) == ["__init__.py", "fiftyone.yml"]
    assert seen["operators"] == ["select_samples", "push_to_labelstudio", "pull_from_labelstudio"]
    for name in seen["operators"]:
        assert f"@activeft/activeft-label/{name}" in seen["listed"]
