"""The end of the data flow: metrics written by notebooks and read back by tests and the runner.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = write_metrics(d, {"accuracy": 0.5})
    >>> read_metrics(d)["accuracy"]
    0.5
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.json"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and callable(x.item):  # torch scalars
        return _jsonable(x.item())
    return x


def write_metrics(out_dir: str | Path, metrics: dict[str, Any], merge: bool = True) -> Path:
    """Write ``metrics`` to ``out_dir/metrics.json`` (merged into what is there when ``merge``)."""
    path = Path(out_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if merge and path.exists() else {}
    current.update(_jsonable(metrics))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def read_metrics(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/metrics.json``; a clear error when the notebook did not write it."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: the notebook did not call mmkit.report.write_metrics"
        )
    return json.loads(path.read_text())
