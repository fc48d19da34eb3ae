"""Bad input: one clear line on stderr naming the file, exit code 2, no traceback."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import SAMPLES, run_cli


def _fails_cleanly(path: Path | str, *needles: str) -> str:
    r = run_cli("show", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("lstm-inspect: ") for line in lines), r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr
    return r.stderr


def test_missing_path(tmp_path: Path) -> None:
    _fails_cleanly(tmp_path / "nope.h5", "nope.h5", "no such file")


def test_directory(tmp_path: Path) -> None:
    _fails_cleanly(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.h5").write_bytes(b"")
    _fails_cleanly(tmp_path / "empty.h5", "is empty")


def test_not_hdf5_nor_zip(tmp_path: Path) -> None:
    bad = tmp_path / "model.h5"
    bad.write_text("this is a CSV, not a model\n1,2,3\n")
    _fails_cleanly(bad, "model.h5", "neither HDF5")


@pytest.mark.parametrize("name", ["tfk_single.h5", "k3_stacked.keras", "k3_single.weights.h5"])
@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_truncated(tmp_path: Path, name: str, fraction: float) -> None:
    data = (SAMPLES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * fraction)])
    _fails_cleanly(cut, name)


def _rezip(src: Path, dst: Path, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            zout.writestr(item, (replace or {}).get(item.filename, zin.read(item.filename)))


def test_keras_archive_without_weights(tmp_path: Path) -> None:
    _rezip(SAMPLES / "k3_single.keras", tmp_path / "m.keras", drop=("model.weights.h5",))
    _fails_cleanly(tmp_path / "m.keras", "m.keras", "no weights")


def test_keras_archive_with_broken_json(tmp_path: Path) -> None:
    _rezip(SAMPLES / "k3_single.keras", tmp_path / "m.keras", replace={"config.json": b'{"class_name": "Sequ'})
    _fails_cleanly(tmp_path / "m.keras", "config.json is not valid JSON")


def test_keras_archive_with_non_utf8_config(tmp_path: Path) -> None:
    _rezip(SAMPLES / "k3_single.keras", tmp_path / "m.keras", replace={"config.json": b"\xff\xfe\x00{"})
    _fails_cleanly(tmp_path / "m.keras", "config.json")


def test_zip_that_is_not_a_keras_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as z:
        z.writestr("readme.txt", "hello")
    _fails_cleanly(tmp_path / "m.keras", "no config.json")


def test_no_recurrent_layer(tmp_path: Path) -> None:
    path = tmp_path / "dense_only.h5"
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 4]}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        group = f.create_group("model_weights").create_group("dense")
        group.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        group["dense/kernel:0"] = np.zeros((4, 2), np.float32)
        group["dense/bias:0"] = np.zeros(2, np.float32)
    _fails_cleanly(path, "no recurrent layer (LSTM, GRU, SimpleRNN) in", "dense_only.h5", "it has: Dense")


def _copy_with_dataset(tmp_path: Path, name: str, key: str, value: np.ndarray) -> Path:
    dst = tmp_path / name
    shutil.copy(SAMPLES / name, dst)
    with h5py.File(dst, "r+") as f:
        del f[key]
        f[key] = value
    return dst


def test_inconsistent_recurrent_kernel(tmp_path: Path) -> None:
    key = "model_weights/lstm/lstm/lstm_cell/recurrent_kernel:0"
    dst = _copy_with_dataset(tmp_path, "tfk_single.h5", key, np.zeros((5, 19), "float32"))
    err = _fails_cleanly(dst, "layer lstm", key, "(5, 19)")
    r = run_cli("show", str(dst), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 2 and doc["layers"][0]["shapes_ok"] is False and doc["problems"]
    assert "✗" in run_cli("show", str(dst)).stdout, err


def test_inconsistent_bias(tmp_path: Path) -> None:
    key = "model_weights/lstm/lstm/lstm_cell/bias:0"
    dst = _copy_with_dataset(tmp_path, "tfk_single.h5", key, np.zeros((21,), "float32"))
    _fails_cleanly(dst, key, "(20,)", "(21,)")


def test_kernel_that_does_not_fit_what_feeds_it(tmp_path: Path) -> None:
    """The second LSTM is fed 6 features by the first; give its kernel 7 rows (and a fitting 4·N_c)."""
    key = "model_weights/lstm_2/lstm_2/lstm_cell/kernel:0"
    with h5py.File(SAMPLES / "tfk_stacked_hard_sigmoid.h5", "r") as f:
        assert f[key].shape == (6, 16)
    dst = _copy_with_dataset(tmp_path, "tfk_stacked_hard_sigmoid.h5", key, np.zeros((7, 16), "float32"))
    _fails_cleanly(dst, "layer lstm_2", key, "fed 6 features", "(7, 16)")


def test_missing_weights_dataset(tmp_path: Path) -> None:
    dst = tmp_path / "m.weights.h5"
    shutil.copy(SAMPLES / "k3_stacked.weights.h5", dst)
    with h5py.File(dst, "r+") as f:
        del f["layers/lstm_1/cell/vars/2"]
    # without its bias the direction is not a recognisable LSTM any more unless use_bias=False fits
    r = run_cli("show", str(dst), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["layers"][1]["use_bias"] is False


def test_external_link_is_not_followed(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["k"] = np.zeros((3, 20), "float32")
    dst = tmp_path / "tfk_single.h5"
    shutil.copy(SAMPLES / "tfk_single.h5", dst)
    key = "model_weights/lstm/lstm/lstm_cell/kernel:0"
    with h5py.File(dst, "r+") as f:
        del f[key]
        f[key] = h5py.ExternalLink(str(other), "k")
    _fails_cleanly(dst, "link")


def test_library_raises_inspect_error() -> None:
    import lstm_inspect

    with pytest.raises(lstm_inspect.InspectError, match="no such file"):
        lstm_inspect.load("does/not/exist.h5")
    with pytest.raises(lstm_inspect.InspectError, match="no recurrent direction named"):
        lstm_inspect.load(SAMPLES / "k3_single.keras").direction("nope")


def test_zip_member_inflation_is_capped(tmp_path: Path) -> None:
    """A deflated weights member that claims far more than its compressed size is refused up front."""
    buf = io.BytesIO()
    with zipfile.ZipFile(SAMPLES / "k3_single.keras") as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model.weights.h5":
                data = data + b"\0" * (50 << 20)  # compresses ~1000:1
            z.writestr(item.filename, data)
    (tmp_path / "bomb.keras").write_bytes(buf.getvalue())
    _fails_cleanly(tmp_path / "bomb.keras", "inflate")
