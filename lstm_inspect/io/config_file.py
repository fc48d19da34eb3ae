"""An architecture in its own JSON file, for `--config`: `model.to_json()` (Keras 2 records its keras_version
there) or the config.json of a .keras archive. It pairs with a weights-only file (legacy save_weights .h5, Keras 3
.weights.h5, a TF checkpoint); the readers of those take what `read_config_file` returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lstm_inspect.base.errors import InspectError
from lstm_inspect.io.assemble import load_json
from lstm_inspect.io.keras3 import written_by_keras3

MAX_CONFIG_BYTES = 64 << 20


def read_config_file(path: Path) -> tuple[dict[str, Any], str | None]:
    """An architecture in its own JSON file: `model.to_json()` (with its keras_version when Keras 2 wrote it)
    or the config.json of a .keras. Returns the {"class_name", "config"} and the Keras version if recorded."""
    if not path.is_file():
        raise InspectError(f"{path}: no such file (--config takes a model.to_json() file)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InspectError(f"{path}: is too large for a model config")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InspectError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    cfg = load_json(text, "the --config file", path)
    if not isinstance(cfg, dict) or "class_name" not in cfg or "config" not in cfg:
        raise InspectError(f"{path}: is not a Keras model config (expected the JSON of model.to_json())")
    version = cfg.get("keras_version")
    if not isinstance(version, str):
        version = "3" if written_by_keras3(cfg, keras3_layout=False) else None
    return {"class_name": cfg["class_name"], "config": cfg["config"]}, version
