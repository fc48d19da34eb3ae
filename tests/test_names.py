"""Names, numbers and inputs from a stranger's file that used to cost minutes, forge lines, or end in a bug (issue 21,
§3 and the h5py attribute of §5).

Each file is built here from a Keras-written sample: a 400,000-character layer name (plot took 587 s), names holding
newlines, tabs and other control or separator characters (they printed lines that looked like ours), an integer of
5,000 digits in a config (exit 3), a CSV of 10^7 columns (387 MB before it was refused), and an HDF5 attribute whose
string datatype names an encoding that does not exist (h5py's TypeError, exit 3). Costs are measured on the command
run as a user runs it, in a subprocess: its CPU time and its peak RSS (`getrusage(RUSAGE_CHILDREN)` of a process
that runs only that command), which other jobs on the machine do not stretch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from lstm_inspect.cli import app

from conftest import SAMPLES

LONG = 400_000

# run one command in a child of a child, and print that command's CPU seconds and peak RSS (MB) as the last line
MEASURE = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
           "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
           "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(f'\\n{u.ru_utime + u.ru_stime} {u.ru_maxrss / 1024}')\n"
           "sys.exit(r.returncode)\n")


def measured(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """The console script run on args: (its result, its CPU seconds, its peak RSS in MB)."""
    exe = Path(sys.executable).with_name("lstm-inspect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lstm_inspect.cli"]
    env = dict(os.environ, COLUMNS="200")
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd, *args], capture_output=True, text=True, env=env,
                       timeout=600)
    out, _, last = r.stdout.rstrip("\n").rpartition("\n")
    cpu, rss = (float(v) for v in last.split())
    return subprocess.CompletedProcess(r.args, r.returncode, out, r.stderr), cpu, rss


def renamed(dst: Path, name: str, src: str = "k3_single.keras") -> Path:
    """A copy of a Keras 3 sample whose LSTM is called `name` everywhere (its config and every reference),
    DEFLATE-compressed as a user's zip tool would."""
    with zipfile.ZipFile(SAMPLES / src) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    text = members["config.json"].decode()
    assert text.count('"lstm"') >= 1
    members["config.json"] = text.replace('"lstm"', json.dumps(name)).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)
    return dst


def sample_io(tmp: Path, stem: str = "k3_single") -> tuple[Path, Path]:
    with np.load(SAMPLES / f"{stem}.io.npz") as d:
        np.save(tmp / "x.npy", d["x"])
        np.save(tmp / "y.npy", d["y"])
    return tmp / "x.npy", tmp / "y.npy"


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# ---------------------------------------------------------------- a 400,000-character name


def test_a_400000_character_name_is_shortened_everywhere_but_json(tmp_path: Path) -> None:
    name = "L" * (LONG // 2) + "M" * (LONG // 2)
    model = renamed(tmp_path / "long.keras", name)
    assert model.stat().st_size < 10_000  # the file: 3 KB on disk
    result, cpu, rss = measured("plot", str(model), "-o", str(tmp_path / "plots"))
    assert result.returncode == 0, result.stderr
    assert cpu < 20 and rss < 400, f"plot took {cpu:.1f} s of CPU and {rss:.0f} MB (before: 587 s, 405 MB)"
    for path in (tmp_path / "plots").rglob("*"):
        assert len(path.name.encode()) <= 255
    manifest = json.loads((tmp_path / "plots" / "manifest.json").read_text())
    assert [entry["direction"] for entry in manifest["folders"].values()] == [name]

    for argv in (["show", str(model)], ["stats", str(model)]):
        r = invoke(*argv)
        assert r.exit_code == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(map(len, lines)) <= 250, (argv, max(map(len, lines)))
        assert sum(len(line) for line in lines) < 10_000, argv
        assert "LLLL…(" in r.stdout and "characters cut)…MMMM" in r.stdout, argv
    r = invoke("show", str(model), "--json")
    assert r.exit_code == 0 and [d["name"] for d in json.loads(r.stdout)["layers"]] == [name]

    # an error that lists the names: one line, bounded
    r = invoke("dump", str(model), "-o", str(tmp_path / "d"), "--layer", "nope")
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1 and len(r.stderr) < 1_200, r.stderr[:300]
    r = invoke("dump", str(model), "-o", str(tmp_path / "d"))
    assert r.exit_code == 0, r.stderr[:300]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert {entry["name"] for entry in manifest["files"].values()} == {name}


def test_verify_hands_keras_a_stand_in_for_a_name_it_cannot_take(tmp_path: Path) -> None:
    """Keras keeps a layer's name in every op it makes (the 400,000-character name cost 3.6 GB and 38 s in verify),
    and TensorFlow's name scopes refuse control characters: verify gives Keras a short stand-in, maps it back, and
    the whole model is checked against Keras, bounded."""
    x, _ = sample_io(tmp_path)
    for stem, name in (("long", "L" * (LONG // 2) + "M" * (LONG // 2)), ("control", f"lstm\n{FAKE}")):
        model = renamed(tmp_path / f"{stem}.keras", name)
        result, cpu, rss = measured("verify", str(model), "-i", str(x))
        assert result.returncode == 0, result.stderr[:500]
        assert result.stdout.rstrip("\n").splitlines()[-1] == "match: every output within tolerance", result.stdout
        assert max(map(len, result.stdout.splitlines())) <= 250
        if stem == "long":
            assert rss < 1_500 and cpu < 60, f"verify took {cpu:.1f} s of CPU and {rss:.0f} MB (before: 38 s, 3.6 GB)"
        else:
            _forged(result.stdout, "\n")


# ---------------------------------------------------------------- control characters in names

CONTROLS = {"\n": "\\x0a", "\t": "\\x09", "\r": "\\x0d", "\x1b": "\\x1b", "\u2028": "\\u2028", "\x85": "\\x85"}
FAKE = "note: every output within tolerance"


def _forged(output: str, char: str) -> None:
    """Every fake line the name carries is there only behind the character's visible escape (ours, or Python's
    repr() in a name the user typed), never as a line of its own."""
    escapes = {CONTROLS[char], repr(char)[1:-1]}
    assert output.count(FAKE) >= 1 and output.count(FAKE) == sum(output.count(e + FAKE) for e in escapes), output
    assert not any(line.lstrip().startswith(FAKE) for line in output.split("\n")), output


@pytest.mark.parametrize("char", list(CONTROLS), ids=[repr(c) for c in CONTROLS])
def test_control_characters_in_a_name_are_shown_never_obeyed(tmp_path: Path, char: str) -> None:
    name = f"lstm{char}{FAKE}"
    model = renamed(tmp_path / "m.keras", name)
    x, y = sample_io(tmp_path)
    for argv in (["show", str(model)], ["stats", str(model)]):
        r = invoke(*argv)
        assert r.exit_code == 0, r.stderr
        assert char not in r.stdout or char == "\n", argv
        _forged(r.stdout, char)
    # one direction against Keras, THEIRS being the engine's own output for it: the table names the direction
    theirs = tmp_path / "theirs.npy"
    r = invoke("forward", str(model), "--layer", name, "-i", str(x), "-o", str(theirs))
    assert r.exit_code == 0, r.stderr
    r = invoke("verify", str(model), "--layer", name, "-i", str(x), "--against", str(theirs))
    assert r.exit_code == 0, r.stderr
    assert char not in r.stdout or char == "\n"
    _forged(r.stdout, char)
    assert r.stdout.rstrip("\n").splitlines()[-1] == "match: every output within tolerance"
    # diagnose of a port that is off: every line of the report is one of ours
    np.save(tmp_path / "off.npy", np.load(y) * 1.5)
    r = invoke("diagnose", str(model), "-i", str(x), "--against", str(tmp_path / "off.npy"))
    assert r.exit_code == 1, r.stderr
    assert char not in r.stdout or char == "\n"
    # errors that quote the name: one line each
    for argv in (["dump", str(model), "-o", str(tmp_path / "d"), "--layer", f"nope{char}{FAKE}"],
                 ["forward", str(model), "-i", str(x), "-o", str(tmp_path / "y.npy"), "--layer", "nope"]):
        r = invoke(*argv)
        assert r.exit_code == 2 and len(r.stderr.split("\n")) == 2 and r.stderr.startswith("lstm-inspect: "), argv
        assert char not in r.stderr.rstrip("\n"), argv
        _forged(r.stderr, char)


# ---------------------------------------------------------------- integers Python will not read


def _huge(text: str) -> str:
    return text.replace('"HUGE"', "9" * 5_000)


def test_an_integer_of_5000_digits_in_a_config_is_bad_input(tmp_path: Path) -> None:
    """Python's json refuses an integer past sys.get_int_max_str_digits() (4,300) with a ValueError that is not a
    JSONDecodeError: it was exit 3. Every place a config is parsed: a .keras's config.json, a legacy .h5's
    model_config, a --config file."""
    with zipfile.ZipFile(SAMPLES / "k3_single.keras") as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    cfg = json.loads(members["config.json"])
    cfg["config"]["layers"][1]["config"]["units"] = "HUGE"
    members["config.json"] = _huge(json.dumps(cfg)).encode()
    keras = tmp_path / "m.keras"
    with zipfile.ZipFile(keras, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    h5 = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "tfk_single.h5", h5)
    with h5py.File(h5, "r+") as f:
        raw = f.attrs["model_config"]
        legacy = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        next(e for e in legacy["config"]["layers"] if e["class_name"] == "LSTM")["config"]["units"] = "HUGE"
        f.attrs["model_config"] = _huge(json.dumps(legacy))
    config = tmp_path / "model.json"
    config.write_text(members["config.json"].decode())
    cases = [(keras, [], "config.json"), (h5, [], "the model_config attribute"),
             (SAMPLES / "k3_single.weights.h5", ["--config", str(config)], "the --config file")]
    for model, extra, what in cases:
        if not model.exists():
            continue
        for command in ("show", "stats"):
            r = invoke(command, str(model), *extra)
            assert r.exit_code == 2, (command, model, r.stderr)
            assert r.stderr.count("\n") == 1 and f"{what} holds an integer of more than 4,300 digits" in r.stderr


# ---------------------------------------------------------------- a CSV input of ten million columns


def test_a_csv_of_ten_million_columns_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["0"] * 10_000_000) + "\n")  # 20 MB
    model = SAMPLES / "k3_single.keras"
    x, _ = sample_io(tmp_path)
    baseline, base_cpu, base_rss = measured("forward", str(model), "-i", str(x), "-o", str(tmp_path / "y0.npy"))
    assert baseline.returncode == 0
    result, cpu, rss = measured("forward", str(model), "-i", str(wide), "-o", str(tmp_path / "y.npy"))
    assert result.returncode == 2 and "holds more than 65,536 values (features per step)" in result.stderr
    # before: 387 MB and 9.5 s; NumPy's parser alone takes 17 times the file (340 MB)
    assert rss < base_rss + 60 and cpu < base_cpu + 1.5, f"{cpu:.2f} s, {rss:.0f} MB (a good input: {base_cpu:.2f}, " \
                                                          f"{base_rss:.0f})"
    # a width under the cap but not the model's: refused on its first row, whatever follows
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("# steps x features\n\n" + "1,2,3,4\n" * 5)
    r = invoke("forward", str(model), "-i", str(narrow), "-o", str(tmp_path / "y.npy"))
    assert r.exit_code == 2 and "first row holds 4 values (features per step); the model takes 3" in r.stderr
    # the width the model takes is read, comments and blank lines skipped as np.loadtxt skips them
    fits = tmp_path / "fits.csv"
    with np.load(SAMPLES / "k3_single.io.npz") as d:
        x = d["x"][0]
    np.savetxt(fits, x, delimiter=",", header="steps x features", fmt="%.9g")
    r = invoke("forward", str(model), "-i", str(fits), "-o", str(tmp_path / "y2.npy"))
    assert r.exit_code == 0, r.stderr
    np.save(tmp_path / "x1.npy", x[None])
    r = invoke("forward", str(model), "-i", str(tmp_path / "x1.npy"), "-o", str(tmp_path / "y1.npy"))
    assert r.exit_code == 0 and np.array_equal(np.load(tmp_path / "y2.npy"), np.load(tmp_path / "y1.npy"))
    # THEIRS (no width to expect) is still capped
    r = invoke("diagnose", str(model), "-i", str(tmp_path / "x1.npy"), "--against", str(wide))
    assert r.exit_code == 2 and "at most 65,536 are read" in r.stderr, r.stderr


# ---------------------------------------------------------------- an attribute whose string encoding is not one


def damaged_encoding(dst: Path, attribute: str = "model_config", byte: int = 2, value: int = 0x0A) -> Path:
    """tfk_single.h5 with the character set of `attribute`'s string datatype set to 10, which HDF5 does not define
    (only 0 ASCII and 1 UTF-8): the fuzz case `flip_header` seed 511 of issue 21. The attribute message (version
    1) holds its name, padded to 8 bytes, then its datatype: a variable-length string (class 9, first byte 0x19)
    whose third byte's low nibble is the character set, and whose second byte's low nibble is its type (1 string,
    0 sequence; byte=1, value=2: a type HDF5 does not define, on which HDF5 itself crashes when h5py reads it)."""
    data = bytearray((SAMPLES / "tfk_single.h5").read_bytes())
    at = data.index(attribute.encode() + b"\0")
    assert int.from_bytes(data[at - 6:at - 4], "little") == len(attribute) + 1  # the message's name size
    datatype = at + -(-(len(attribute) + 1) // 8) * 8
    assert data[datatype] == 0x19 and data[datatype + 1] & 0x0F == 1 and data[datatype + 2] & 0x0F == 0
    data[datatype + byte] = (data[datatype + byte] & 0xF0) | value
    dst.write_bytes(bytes(data))
    return dst


def _groups(f: h5py.File) -> list[str]:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group) else None)
    return found


@pytest.mark.parametrize("attribute", ["model_config", "weight_names"])
def test_an_attribute_in_an_unknown_string_encoding_is_a_damaged_file(tmp_path: Path, attribute: str) -> None:
    path = damaged_encoding(tmp_path / "m.h5", attribute)
    with h5py.File(path, "r") as f, pytest.raises(TypeError, match="Unknown string encoding"):  # h5py's own error
        for obj in [f, *(f[k] for k in _groups(f))]:
            for key in obj.attrs:
                obj.attrs[key]
    x, _ = sample_io(tmp_path, "tfk_single")
    for argv in (["show", str(path)], ["stats", str(path)], ["forward", str(path), "-i", str(x), "-o",
                                                             str(tmp_path / "y.npy")]):
        r = invoke(*argv)
        assert r.exit_code == 2, (argv, r.stderr)
        assert r.stderr == (f"lstm-inspect: {path}: the HDF5 structure is damaged: attribute {attribute} could not "
                            "be read (Unknown string encoding (value 10))\n"), r.stderr


def test_an_attribute_of_an_undefined_variable_length_type_is_refused_before_hdf5_reads_it(tmp_path: Path) -> None:
    """HDF5 crashes the process (a segmentation fault, exit 139) reading this attribute: the datatype class is checked
    first. The crash itself is shown in a child process, so this test survives it."""
    path = damaged_encoding(tmp_path / "m.h5", byte=1, value=2)
    code = f"import h5py; h5py.File({str(path)!r}, 'r').attrs['model_config']"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == -11  # SIGSEGV
    for argv in (["show", str(path)], ["stats", str(path)]):
        r = invoke(*argv)
        assert r.exit_code == 2 and r.stderr == (f"lstm-inspect: {path}: the HDF5 structure is damaged: attribute "
                                                 "model_config is stored as HDF5 datatype class 9, not text\n"), \
            r.stderr
