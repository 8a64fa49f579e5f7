"""A garbage features file or checkpoint is called invalid, with what is expected; the advice to load it
unsafely (allow_pickle, weights_only=False) is never passed on (issue 24, item 5)."""

import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from activeft_label.cli import main
from activeft_label.embeddings.encoders import load_encoder
from activeft_label.errors import InputError

UNSAFE = ("allow_pickle", "pickle.load", "weights_only", "trust")


def _garbage(path):
    path.write_bytes(b"this is not what it claims to be\n" * 20)
    return path


def _assert_safe(text):
    assert not any(word in text for word in UNSAFE), text


@pytest.mark.parametrize("make", [
    lambda p: _garbage(p / "bad.npy"),
    lambda p: (p / "bad.npy").write_bytes(pickle.dumps({"features": [1, 2]})),
    lambda p: np.save(p / "bad.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True),
    lambda p: np.savez(p / "bad.npz", features=np.array([[{"a": 1}], [2]], dtype=object)),
])
def test_a_features_file_that_is_no_array_of_numbers_is_called_invalid(tmp_path, make):
    make(tmp_path)
    source = next(tmp_path.glob("bad.*"))
    result = CliRunner().invoke(main, ["select", str(source), "-b", "1", "-q", "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2, result.output
    assert (f"cannot read features from {source}: it is not a valid features file; expected a 2-D array of "
            f"numbers saved with np.save") in result.output
    assert "Traceback" not in result.output
    _assert_safe(result.output)


def test_labels_that_are_no_numpy_file_are_refused_without_unsafe_advice(tmp_path):
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    _garbage(tmp_path / "y.npy")
    result = CliRunner().invoke(main, ["evaluate", "--features", str(tmp_path / "f.npy"), "--labels",
                                       str(tmp_path / "y.npy"), "-b", "4", "--methods", "random"])
    assert result.exit_code == 2, result.output
    assert "could not be read (not a NumPy file of plain numbers or strings" in result.output
    _assert_safe(result.output)


@pytest.mark.parametrize("model", ["efficientnet-lite0", "RN50"])
def test_a_garbage_checkpoint_is_called_invalid(tmp_path, model):
    checkpoint = _garbage(tmp_path / "weights.pt")
    with pytest.raises(InputError) as caught:
        load_encoder(model, str(checkpoint), device="cpu")
    message = str(caught.value)
    assert message == (f"{checkpoint} is not a valid checkpoint for {model}: expected a PyTorch state dict of "
                       f"tensors, saved with torch.save(model.state_dict(), path)")


def test_the_command_line_says_so_for_pretrained(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    checkpoint = _garbage(tmp_path / "weights.pt")
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "images"), "-q", "--pretrained", str(checkpoint),
                                       "--out", str(tmp_path / "f.npz")])
    assert result.exit_code == 2, result.output
    assert "is not a valid checkpoint for efficientnet-lite0" in result.output and "Traceback" not in result.output
    _assert_safe(result.output)
    assert not (tmp_path / "f.npz").exists()
