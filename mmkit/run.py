"""Papermill runner: execute a parameterized notebook headlessly and collect its metrics.json.

Example:
    >>> # execute_notebook("notebooks/01_explore_dataset.ipynb", "runs/x", {"seed": 1}, smoke=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from mmkit.report import read_metrics

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SMOKE_FILE = NOTEBOOKS / "smoke.yaml"
KERNEL = "python3"


def smoke_parameters(notebook: str | Path) -> dict[str, Any]:
    """The small CI parameters of ``notebook`` from ``notebooks/smoke.yaml`` (keyed by file stem)."""
    table = yaml.safe_load(SMOKE_FILE.read_text()) or {} if SMOKE_FILE.exists() else {}
    return dict(table.get(Path(notebook).stem, {}) or {})


def execute_notebook(
    notebook: str | Path,
    out_dir: str | Path,
    parameters: Optional[dict[str, Any]] = None,
    smoke: bool = False,
) -> dict[str, Any]:
    """Execute ``notebook`` into ``out_dir`` with papermill and return the metrics it wrote there.

    ``out_dir`` (absolute) is passed as the notebook's ``out_dir`` parameter; ``smoke`` applies the
    notebook's smoke parameters first, then ``parameters`` on top.
    """
    import papermill as pm

    notebook = Path(notebook).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    params = smoke_parameters(notebook) if smoke else {}
    params.update(parameters or {})
    params["out_dir"] = str(out_dir)
    pm.execute_notebook(
        str(notebook),
        str(out_dir / notebook.name),
        parameters=params,
        kernel_name=KERNEL,
        cwd=str(ROOT),
        progress_bar=False,
    )
    return read_metrics(out_dir)
