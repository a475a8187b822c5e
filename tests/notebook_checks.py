"""What an executed notebook must look like to read well without a kernel (used by the notebook tests).

JupyterLab shows 50 outputs of a cell and hides the rest behind "Show more outputs"; a widget whose state
is not in the notebook shows "Error displaying widget: model not found" once the kernel is gone.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

MAX_OUTPUTS = 20  # per cell: a finished cell keeps a few lines, never dozens of dead bars
WIDGET = "application/vnd.jupyter.widget-view+json"


def check_reads_well(path: str | Path, max_outputs: int = MAX_OUTPUTS) -> nbformat.NotebookNode:
    """Assert: no cell has more than ``max_outputs`` outputs, no error output, no progress bar left on
    stderr, and every widget output has its state saved in the notebook. Returns the notebook."""
    nb = nbformat.read(str(path), as_version=4)
    state = (
        nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    )
    for i, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", [])
        where = f"{Path(path).name} cell {i} ({cell.source[:60]!r})"
        assert len(outputs) <= max_outputs, f"{where}: {len(outputs)} outputs"
        for o in outputs:
            assert o.output_type != "error", f"{where}: {o.get('ename')}: {o.get('evalue')}"
            if o.output_type == "stream" and o.name == "stderr":
                assert "it/s]" not in o.text and "%|" not in o.text, f"{where}: a progress bar on stderr"
            view = o.get("data", {}).get(WIDGET)
            if view is not None:
                assert view["model_id"] in state, f"{where}: widget {view['model_id']} without saved state"
    return nb


def widget_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(WIDGET in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
