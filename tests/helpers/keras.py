"""Running Keras for the tests: each generation (Keras 3, tf_keras) in a subprocess of its own, once per pytest run
(shared by pytest-xdist's workers), and the strict xfail marks of the layer cases' known engine bugs."""

from __future__ import annotations

import hashlib
import io as bytes_io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import fcntl
except ImportError:  # Windows: each worker then runs Keras in a folder of its own
    fcntl = None  # type: ignore[assignment]

from cases.layers import GENS, KNOWN_BUGS


def keras_once(tmp_path_factory: pytest.TempPathFactory, name: str, script: str, files: dict[str, bytes],
               gens: tuple[str, ...] = GENS) -> dict[str, Path]:
    """Run `python script GEN FOLDER` for each generation at once (FOLDER holds `files`), once per pytest run: the
    workers of pytest-xdist share the result through their common temporary folder, one waiting while another
    computes. Returns {generation: FOLDER/GEN.npz}, what the script wrote."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        root = root.parent  # the run's folder, above each worker's own
    digest = hashlib.sha256(script.encode() + b"".join(k.encode() + v for k, v in sorted(files.items())))
    folder = root / f"keras-{name}-{digest.hexdigest()[:16]}"
    outs = {gen: folder / f"{gen}.npz" for gen in gens}
    with open(f"{folder}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(p.exists() for p in outs.values()):
            folder.mkdir(exist_ok=True)
            for file, data in files.items():
                (folder / file).write_bytes(data)
            (folder / "make.py").write_text(script)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            procs = {gen: subprocess.Popen([sys.executable, str(folder / "make.py"), gen, str(folder)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                     for gen in gens}
            try:
                for gen, proc in procs.items():
                    _, err = proc.communicate(timeout=600)
                    assert proc.returncode == 0, f"{gen}: {err.decode()[-2000:]}"
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
    return outs


# Keras's values for one recurrent layer, run by `keras_once` (argv: GEN FOLDER; FOLDER/jobs.json lists
# {"gen", "file", "layer", "feed"?} and FOLDER/x{k}.npy their inputs): the layer alone on x, a model of its own
# (Input -> that layer, the file's weights); with "feed", the layer feeding it (its output as {k}/x, the mask it
# computes from x as {k}/mask) and the layer's output inside the model, where that mask reaches it. Writes
# FOLDER/GEN.npz with {k}/y0, {k}/y1, ... in the order the layer returns them.
KERAS_LAYER_ALONE = """
import json, os, sys
import numpy as np
gen, folder = sys.argv[1], sys.argv[2]
if gen == "keras3":
    import keras
else:
    import tf_keras as keras
out = {}
for k, job in enumerate(json.load(open(os.path.join(folder, "jobs.json")))):
    if job["gen"] != gen:
        continue
    m = keras.models.load_model(os.path.join(folder, job["file"]), compile=False)
    x = np.load(os.path.join(folder, f"x{k}.npy"))
    if job.get("feed"):  # the layer feeding the recurrent one: its output, and the mask it computes from x
        src = m.get_layer(job["feed"])
        out[f"{k}/x"] = np.asarray(keras.Model(m.inputs, src.output)(x))
        out[f"{k}/mask"] = np.asarray(src.compute_mask(x))
        x = out[f"{k}/x"]
    layer = m.get_layer(job["layer"])  # the recurrent layer alone on what it is fed: a model of its own
    inp = keras.Input(x.shape[1:])
    y = layer(inp)
    y = y if isinstance(y, (list, tuple)) else [y]
    if not job.get("feed"):
        ys = keras.Model(inp, y)(x)
    else:  # masked: the layer's output inside the model, where the mask reaches it
        ys = keras.Model(m.inputs, layer.output)(np.load(os.path.join(folder, f"x{k}.npy")))
    for j, o in enumerate(ys if isinstance(ys, (list, tuple)) else [ys]):
        out[f"{k}/y{j}"] = np.asarray(o)
np.savez(os.path.join(folder, gen + ".npz"), **out)
"""



def keras_layer_alone(tmp_path_factory: pytest.TempPathFactory, name: str, folder: Path,
                      jobs: list[tuple[str, str, str | None, np.ndarray]]) -> dict[int, dict[str, np.ndarray]]:
    """KERAS_LAYER_ALONE on jobs of (file in `folder`, layer, the layer feeding it or None, its input x), each file
    run by the generation that wrote it: {job index: {"y0", "y1", ... (and "x", "mask" with a feed): array}}."""
    spec, files = [], {}
    for k, (file, layer, feed, x) in enumerate(jobs):
        spec.append({"gen": "keras3" if file.endswith(".keras") else "tf_keras", "file": file, "layer": layer,
                     "feed": feed})
        files[file] = (folder / file).read_bytes()
        buf = bytes_io.BytesIO()
        np.save(buf, x)
        files[f"x{k}.npy"] = buf.getvalue()
    files["jobs.json"] = json.dumps(spec).encode()
    found: dict[int, dict[str, np.ndarray]] = {}
    for path in keras_once(tmp_path_factory, name, KERAS_LAYER_ALONE, files, ("keras3", "tf_keras")).values():
        with np.load(path) as d:
            for key in d.files:
                k, what = key.split("/")
                found.setdefault(int(k), {})[what] = d[key]
    return found

def known_bug(gen: str, case_id: str) -> list[Any]:
    """The xfail mark of a known engine bug (strict: the test fails once the bug is fixed, to drop the entry)."""
    bug = KNOWN_BUGS.get((gen, case_id))
    return [pytest.mark.xfail(reason=bug, strict=True, raises=AssertionError)] if bug else []
