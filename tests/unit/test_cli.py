"""The `activeft` command line: real files, real encoder, click's runner and one real subprocess."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from activeft_label.cli import main


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def clustered_npz(path, n=300, dim=32, clusters=10, seed=0, ids=True):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    x = (centers[labels] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    arrays = {"features": x, "other": np.zeros(3)}
    if ids:
        arrays["ids"] = np.array([f"item-{k:04d}" for k in range(n)])
    np.savez(path, **arrays)
    return x, labels


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """24 small real PNG images in nested folders: 4 shapes × 2 colours × 3 sizes, plus a corrupt file."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub" / "deeper").mkdir(parents=True)
    k = 0
    for shape in ["circle", "square", "triangle", "cross"]:
        for colour in [(220, 30, 30), (30, 30, 220)]:
            for size in [20, 30, 40]:
                image = Image.new("RGB", (64, 64), "white")
                draw = ImageDraw.Draw(image)
                box = (32 - size // 2, 32 - size // 2, 32 + size // 2, 32 + size // 2)
                if shape == "circle":
                    draw.ellipse(box, fill=colour)
                elif shape == "square":
                    draw.rectangle(box, fill=colour)
                elif shape == "triangle":
                    draw.polygon([(box[0], box[3]), (box[2], box[3]), (32, box[1])], fill=colour)
                else:
                    draw.line((box[0], box[1], box[2], box[3]), fill=colour, width=6)
                    draw.line((box[0], box[3], box[2], box[1]), fill=colour, width=6)
                folder = root if k % 3 == 0 else root / "sub" if k % 3 == 1 else root / "sub" / "deeper"
                image.save(folder / f"{shape}_{colour[0]}_{size}.png")
                k += 1
    (root / "sub" / "broken.png").write_bytes(b"this is not a png at all")
    return root


def test_select_features_npz_writes_a_ranked_csv(tmp_path):
    x, _ = clustered_npz(tmp_path / "f.npz")
    out = tmp_path / "picks.csv"
    result = run(["select", str(tmp_path / "f.npz"), "--budget", "5%", "--iters", "60", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0].keys()) == ["rank", "index", "id", "path", "cluster_size"]
    assert len(rows) == 15
    assert [int(r["rank"]) for r in rows] == list(range(1, 16))
    assert len({r["index"] for r in rows}) == 15
    assert all(r["id"] == f"item-{int(r['index']):04d}" for r in rows)
    assert all(r["path"] == "" for r in rows)
    assert sum(int(r["cluster_size"]) for r in rows) == 300
    assert "Selected 15 of 300 items with activeft" in result.output
    assert "Coverage:" in result.output


def test_select_npy_json_output_and_plot(tmp_path):
    x, _ = clustered_npz(tmp_path / "f.npz")
    np.save(tmp_path / "f.npy", x)
    out = tmp_path / "picks.json"
    plot = tmp_path / "map.png"
    result = run(["select", str(tmp_path / "f.npy"), "-b", "12", "--method", "kmeans", "--out", str(out),
                  "--plot", str(plot), "-q"])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert [r["rank"] for r in records] == list(range(1, 13))
    assert all(r["id"] == str(r["index"]) for r in records)
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_same_seed_same_csv_and_loss_forms_differ(tmp_path):
    clustered_npz(tmp_path / "f.npz")
    for name, extra in [("a", []), ("b", []), ("c", ["--loss", "paper"])]:
        result = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--iters", "50", "-q",
                      "--out", str(tmp_path / f"{name}.csv")] + extra)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_second_round_with_labeled_file(tmp_path):
    clustered_npz(tmp_path / "f.npz")
    first = tmp_path / "round1.csv"
    assert run(["select", str(tmp_path / "f.npz"), "-b", "10", "--iters", "40", "-q", "--out", str(first)]).exit_code == 0
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("# round 1\n" + "\n".join(r["id"] for r in read_csv(first)) + "\n")
    second = tmp_path / "round2.csv"
    result = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--iters", "40", "-q", "--labeled", str(labeled),
                  "--out", str(second)])
    assert result.exit_code == 0, result.output
    assert "10 already labeled" in result.output
    assert not {r["id"] for r in read_csv(first)} & {r["id"] for r in read_csv(second)}


def test_select_image_folder_with_the_real_encoder(image_folder, tmp_path):
    out = tmp_path / "sel.csv"
    result = run(["select", str(image_folder), "-b", "6", "--iters", "50", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert len(rows) == 6
    assert all(os.path.isfile(r["path"]) and os.path.isabs(r["path"]) for r in rows)
    assert all(not os.path.isabs(r["id"]) and (image_folder / r["id"]).is_file() for r in rows)
    assert "Skipped 1 unreadable item(s)" in result.output and "broken.png" in result.output
    shapes = {os.path.basename(r["path"]).split("_")[0] for r in rows}
    assert len(shapes) >= 3                     # diverse picks, not six of one kind


def test_embed_then_select_from_features(image_folder, tmp_path):
    feats = tmp_path / "feats.npz"
    result = run(["embed", str(image_folder), "--out", str(feats), "-q"])
    assert result.exit_code == 0, result.output
    data = np.load(feats)
    assert data["features"].shape == (24, 1280) and data["ids"].shape == (24,)
    again = run(["embed", str(image_folder), "--out", str(tmp_path / "again.npz"), "-q"])
    assert "(24 from cache)" in again.output
    cached_bad_device = run(["embed", str(image_folder), "--out", str(tmp_path / "x.npz"), "-q", "--device", "gpu0"])
    assert cached_bad_device.exit_code == 2 and "unknown device" in cached_bad_device.output
    assert not (tmp_path / "x.npz").exists()
    result = run(["select", str(feats), "-b", "4", "--iters", "30", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0
    assert all(r["id"].endswith(".png") for r in read_csv(tmp_path / "s.csv"))

    # float16: half the file, unit rows (selection compares directions only), the same ids; select maps it.
    half = tmp_path / "half.npz"
    result = run(["embed", str(image_folder), "--out", str(half), "-q", "--dtype", "float16"])
    assert result.exit_code == 0 and "float16" in result.output
    wide, narrow = np.load(feats), np.load(half)
    assert narrow["features"].dtype == np.float16 and list(narrow["ids"]) == list(wide["ids"])
    unit = wide["features"] / np.linalg.norm(wide["features"], axis=1, keepdims=True)
    np.testing.assert_allclose(narrow["features"].astype(np.float32), unit, atol=1e-3)
    result = run(["select", str(half), "-b", "4", "--iters", "30", "--out", str(tmp_path / "h.csv")])
    assert result.exit_code == 0 and "float16 storage" in result.output


def test_list_file_source(image_folder, tmp_path):
    paths = sorted(str(p) for p in image_folder.rglob("*.png"))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(paths[:10]) + "\n")
    result = run(["select", str(listing), "-b", "3", "--iters", "20", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert len(read_csv(tmp_path / "s.csv")) == 3


@pytest.mark.parametrize("args, message", [
    (["-b", "0"], "at least 1"),
    (["-b", "301"], "larger than the 300"),
    (["-b", "0.1%"], "rounds to 0"),
    (["-b", "ten"], "neither a count"),
    (["-b", "5", "--out", "x.txt"], "must end in .csv or .json"),
    (["-b", "5", "--out", "missing/x.csv"], "does not exist"),
    (["-b", "5", "--plot", "map.gif"], "--plot"),
    (["-b", "5", "--temperature", "0"], "temperature must be a number above 0"),
    (["-b", "5", "--device", "tpu"], "unknown device"),
    (["-b", "5", "--device", "meta"], "unknown device"),        # a torch device type that cannot select
    (["-b", "5", "--method", "magic"], "Invalid value for '--method'"),
])
def test_usage_errors_exit_2_with_one_message_and_write_nothing(tmp_path, monkeypatch, args, message):
    clustered_npz(tmp_path / "f.npz")
    monkeypatch.chdir(tmp_path)
    result = run(["select", str(tmp_path / "f.npz"), "-q"] + args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "bad.npy", np.array([[1.0, np.nan], [0.5, 0.5], [1, 1]])), "NaN or infinite"),
    (lambda p: np.save(p / "bad.npy", np.array([[0.0, 0.0], [0.5, 0.5], [1, 1]])), "all-zero"),
    (lambda p: np.save(p / "bad.npy", np.zeros((4, 3, 2))), "shape"),
    (lambda p: np.savez(p / "bad.npz", feats=np.ones((4, 3))), "features"),
    (lambda p: np.savez(p / "bad.npz", features=np.ones((4, 3)), ids=np.array(["a", "b"])), "ids"),
])
def test_bad_features_files(tmp_path, make, message):
    make(tmp_path)
    source = next(tmp_path.glob("bad.*"))
    result = run(["select", str(source), "-b", "1", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_plot_that_cannot_be_drawn_is_refused_before_the_selection_is_written(tmp_path):
    np.save(tmp_path / "one_column.npy", np.random.default_rng(0).normal(size=(50, 1)).astype(np.float32))
    (tmp_path / "s.csv").write_text("kept\n")
    result = run(["select", str(tmp_path / "one_column.npy"), "-b", "2", "-q", "--out", str(tmp_path / "s.csv"),
                  "--plot", str(tmp_path / "map.png")])
    assert result.exit_code == 2 and "--plot needs at least 3 items with at least 2" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "s.csv").read_text() == "kept\n" and not (tmp_path / "map.png").exists()


def test_huge_or_tiny_features_select_as_their_directions_do(tmp_path):
    x, _ = clustered_npz(tmp_path / "f.npz")
    picks = {}
    for name, scale in (("plain", 1.0), ("huge", 1e20), ("tiny", 1e-30)):
        np.save(tmp_path / f"{name}.npy", (x * np.float32(scale)).astype(np.float32))
        result = run(["select", str(tmp_path / f"{name}.npy"), "-b", "6", "--iters", "30", "-q",
                      "--out", str(tmp_path / f"{name}.csv")])
        assert result.exit_code == 0, result.output
        assert "overflow" not in result.output and "Warning" not in result.output
        picks[name] = [row["index"] for row in read_csv(tmp_path / f"{name}.csv")]
    assert picks["huge"] == picks["plain"] and picks["tiny"] == picks["plain"]


def test_labeled_file_that_is_not_text_is_refused(tmp_path):
    clustered_npz(tmp_path / "f.npz")
    (tmp_path / "labeled.txt").write_bytes(b"\xff\xfe\x00binary")
    result = run(["select", str(tmp_path / "f.npz"), "-b", "2", "-q", "--labeled", str(tmp_path / "labeled.txt"),
                  "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2 and "not a UTF-8 text file" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_empty_folder_and_missing_source(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(["select", str(tmp_path / "empty"), "-b", "1", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no images" in result.output.lower() or "empty" in result.output.lower()
    result = run(["select", str(tmp_path / "nope"), "-b", "1"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_a_budget_no_pool_could_meet_is_refused_before_embedding(image_folder, tmp_path):
    cache = tmp_path / "cache"
    for budget, message in (("abc", "neither a count"), ("0", "at least 1"), ("150%", "more than 100%")):
        result = run(["select", str(image_folder), "-b", budget, "-q", "--cache-dir", str(cache),
                      "--out", str(tmp_path / "s.csv")])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not cache.exists()                                  # nothing was embedded


def test_unknown_model_lists_close_matches(image_folder, tmp_path):
    result = run(["select", str(image_folder), "-b", "2", "--model", "ViT-B-33", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2
    assert "ViT-B-32" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_offline_pretrained_download_fails_fast_and_clearly(image_folder, tmp_path):
    result = run(["select", str(image_folder), "-b", "2", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k",
                  "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 1
    assert "--pretrained" in result.output and "efficientnet-lite0" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_help_reads_like_a_manual():
    for args in [["--help"], ["select", "--help"], ["embed", "--help"], ["demo", "--help"]]:
        result = run(args)
        assert result.exit_code == 0
    text = run(["select", "--help"]).output
    for option in ["--budget", "--method", "--loss", "--iters", "--temperature", "--seed", "--device", "--out",
                   "--plot", "--model", "--pretrained", "--labeled"]:
        assert option in text


def test_real_subprocess_on_a_folder(image_folder, tmp_path):
    env = dict(os.environ, ACTIVEFT_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    out = tmp_path / "sub.csv"
    proc = subprocess.run([sys.executable, "-m", "activeft_label.cli", "select", str(image_folder), "-b", "25%",
                           "--iters", "30", "-q", "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(read_csv(out)) == 6                # 25% of the 24 readable images
    bad = subprocess.run([sys.executable, "-m", "activeft_label.cli", "select", str(image_folder), "-b", "0"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "at least 1" in bad.stderr


def test_demo_on_a_small_pool(tmp_path):
    result = run(["demo", "--workdir", str(tmp_path / "demo"), "--size", "120", "--budget", "6", "-q"])
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "demo" / "selection.csv")
    assert len(rows) == 6
    assert (tmp_path / "demo" / "map.png").stat().st_size > 1000
    assert "coverage" in result.output and "vs random" in result.output


def test_evaluate_compares_methods_on_a_labeled_pool(tmp_path):
    x, labels = clustered_npz(tmp_path / "f.npz", n=400, clusters=8)
    np.save(tmp_path / "labels.npy", labels)
    result = run(["evaluate", "--features", str(tmp_path / "f.npz"), "--labels", str(tmp_path / "labels.npy"),
                  "-b", "16", "--methods", "activeft,random", "--seeds", "2", "--iters", "60",
                  "--out", str(tmp_path / "trials.csv")])
    assert result.exit_code == 0, result.output
    assert "| activeft |" in result.output and "| random |" in result.output
    rows = read_csv(tmp_path / "trials.csv")
    assert len(rows) == 4 and {r["method"] for r in rows} == {"activeft", "random"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    # Well-separated clusters: a diverse selection of 16 finds nearly all 8 classes.
    assert min(int(r["classes"]) for r in rows if r["method"] == "activeft") >= 7
    bad = run(["evaluate", "--features", str(tmp_path / "f.npz"), "--labels", str(tmp_path / "labels.npy"),
               "-b", "16", "--methods", "magic"])
    assert bad.exit_code == 2 and "unknown method" in bad.output


def test_demo_checks_budget_and_device_before_writing_images(tmp_path):
    for args, message in ((["--budget", "abc"], "neither a count"), (["--budget", "101"], "larger than"),
                          (["--device", "nonsense"], "unknown device")):
        result = run(["demo", "--workdir", str(tmp_path / "demo"), "--size", "100", "-q", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
        assert not (tmp_path / "demo").exists()


def _labeled_pool(tmp_path, n=60):
    x, labels = clustered_npz(tmp_path / "f.npz", n=n, clusters=4)
    np.save(tmp_path / "y.npy", labels)
    return x, labels


@pytest.mark.parametrize("make_labels, message", [
    (lambda p, y: (p / "y.txt").write_bytes(b"\xff\xfe\x00"), "not UTF-8 text"),
    (lambda p, y: np.savez(p / "y.npz", classes=y), "has no 'labels' array (it has classes)"),
    (lambda p, y: (p / "y.npz").write_bytes(b"PK\x03\x04 not a zip archive"), "could not be read (BadZipFile"),
    (lambda p, y: (p / "y.npy").write_text("1\n2\n"), "could not be read"),
    (lambda p, y: np.save(p / "y.npy", y + 0.5), "fractional numbers"),
    (lambda p, y: np.save(p / "y.npy", np.where(np.arange(y.size) == 3, np.nan, y)), "NaN"),
    (lambda p, y: np.save(p / "y.npy", y.reshape(-1, 1)), "labels for 60 feature rows"),
])
def test_evaluate_bad_labels_exit_2_with_one_message(tmp_path, make_labels, message):
    _, y = _labeled_pool(tmp_path)
    (tmp_path / "y.npy").unlink()
    make_labels(tmp_path, y)
    labels = next(tmp_path.glob("y.*"))
    result = run(["evaluate", "--features", str(tmp_path / "f.npz"), "--labels", str(labels), "-b", "4",
                  "--methods", "random", "--seeds", "1", "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.csv").exists()


def test_evaluate_bad_features_test_sets_and_methods_exit_2(tmp_path):
    x, y = _labeled_pool(tmp_path)
    base = ["evaluate", "--labels", str(tmp_path / "y.npy"), "-b", "4", "--seeds", "1",
            "--out", str(tmp_path / "t.csv")]
    nan_pool = x.copy()
    nan_pool[7, 0] = np.nan                                  # lands in the held-out part or the pool alike
    np.save(tmp_path / "nan.npy", nan_pool)
    np.save(tmp_path / "test8.npy", x[:10, :8])
    np.save(tmp_path / "ytest.npy", y[:10])
    np.save(tmp_path / "few.npy", x[:10])
    np.save(tmp_path / "yfew.npy", y[:10])
    cases = [
        (["--features", str(tmp_path / "nan.npy"), "--methods", "random"], "NaN or infinite"),
        (["--features", str(tmp_path / "f.npz"), "--test-features", str(tmp_path / "test8.npy"),
          "--test-labels", str(tmp_path / "ytest.npy"), "--methods", "random"], "test features have 8 dimensions"),
        (["--features", str(tmp_path / "f.npz"), "--methods", ","], "no methods given"),
        (["--features", str(tmp_path / "f.npz"), "--methods", "kmeans", "--device", "cuda:x"], "unknown device"),
    ]
    for args, message in cases:
        result = run(base + args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    few = run(["evaluate", "--features", str(tmp_path / "few.npy"), "--labels", str(tmp_path / "yfew.npy"), "-b", "2",
               "--methods", "random", "--seeds", "1", "--test-fraction", "0.05", "--out", str(tmp_path / "t.csv")])
    assert few.exit_code == 2 and "too few to hold out" in few.output, few.output
    assert not (tmp_path / "t.csv").exists()


def test_help_of_every_command_group_does_not_import_torch():
    """`activeft --help` and each group's --help answer without loading torch (seconds on a small machine)."""
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom activeft_label.cli import main\n"
            "for args in (['--help'], ['select', '--help'], ['sync', '--help'], ['sync', 'push', '--help'], "
            "['labelstudio', 'setup', '--help'], ['fiftyone', 'select', '--help']):\n"
            "    out = CliRunner().invoke(main, args)\n"
            "    assert out.exit_code == 0, (args, out.output)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_select_minibatch_runs_activeft_on_random_rows_and_refuses_baselines(tmp_path):
    clustered_npz(tmp_path / "f.npz")
    out = tmp_path / "picks.csv"
    result = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--iters", "40", "--minibatch", "100",
                  "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert len(read_csv(out)) == 10
    refused = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--method", "kmeans", "--minibatch", "100",
                   "--out", str(tmp_path / "k.csv"), "-q"])
    assert refused.exit_code == 2 and "--minibatch applies to --method activeft and bilaf only" in refused.output
    assert not (tmp_path / "k.csv").exists()


@pytest.mark.parametrize("method", ["activeft", "kmeans"])
def test_select_center_equals_selecting_from_centred_features(tmp_path, method):
    x, _ = clustered_npz(tmp_path / "f.npz")
    shifted = x + 4.0 * np.abs(x).mean()          # a direction every item shares
    unit_shifted = shifted / np.linalg.norm(shifted, axis=1, keepdims=True)
    np.save(tmp_path / "shifted.npy", shifted)
    np.save(tmp_path / "by_hand.npy", unit_shifted - unit_shifted.mean(axis=0))
    outputs = {}
    for name, source, extra in [("center", "shifted.npy", ["--center"]), ("by_hand", "by_hand.npy", []),
                                ("plain", "shifted.npy", ["--no-center"])]:
        result = run(["select", str(tmp_path / source), "-b", "10", "--iters", "40", "--method", method, "-q",
                      "--out", str(tmp_path / f"{name}.csv")] + extra)
        assert result.exit_code == 0, result.output
        assert ("on centred features" in result.output) == (name == "center")
        outputs[name] = sorted(int(r["index"]) for r in read_csv(tmp_path / f"{name}.csv"))
    assert outputs["center"] == outputs["by_hand"]
    assert outputs["center"] != outputs["plain"]


def test_select_balance_is_passed_to_activeft_and_checked(tmp_path):
    clustered_npz(tmp_path / "f.npz")
    out = tmp_path / "picks.json"
    result = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--iters", "40", "--loss", "paper",
                  "--balance", "0.01", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    import json

    assert len(json.loads(out.read_text())) == 10
    bad = run(["select", str(tmp_path / "f.npz"), "-b", "10", "--balance", "0", "--out", str(tmp_path / "b.csv")])
    assert bad.exit_code == 2 and "balance" in bad.output and not (tmp_path / "b.csv").exists()
