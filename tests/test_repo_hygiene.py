"""Committed notebooks: no outputs, a parameters cell named after config fields, kernel python3; nbdime set up."""

import ast
import copy
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from mmkit.config import config_fields

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters'"
    return cells[0]


def _assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: outputs are committed; run nbstripout"
            assert cell.execution_count is None, f"{path.name}: execution counts are committed"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_map_onto_config_fields(path):
    nb = nbformat.read(path, as_version=4)
    source = _parameters_cell(nb).source
    assert "| None" not in source, "papermill cannot parse `X | None`: use Optional[X]"
    names = _assigned_names(source)
    assert "out_dir" in names
    owners = config_fields()
    unknown = [n for n in names if n not in owners]
    assert not unknown, f"{path.name}: parameters {unknown} are not fields of any mmkit.config dataclass"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    # papermill parses the cell line by line; a comment holding "=" or ";" hides the line from it, and the
    # parameter can then not be set (mmkit run would call it unknown).
    import papermill as pm

    names = _assigned_names(_parameters_cell(nbformat.read(path, as_version=4)).source)
    assert list(pm.inspect_notebook(str(path))) == names


def test_smoke_file_names_real_parameters():
    table = yaml.safe_load((REPO / "notebooks" / "smoke.yaml").read_text()) or {}
    stems = {p.stem: p for p in NOTEBOOKS}
    for stem, params in table.items():
        assert stem in stems, f"smoke.yaml names {stem}, which is not a notebook"
        names = _assigned_names(_parameters_cell(nbformat.read(stems[stem], as_version=4)).source)
        assert set(params or {}) <= set(names), f"{stem}: smoke parameters {set(params) - set(names)} unknown"


def test_nbdime_ignores_outputs_and_papermill_metadata(tmp_path):
    nbdiff = str(Path(sys.executable).parent / "nbdiff")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nprint(x)")]
    executed = copy.deepcopy(nb)
    executed.cells[0].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    executed.cells[0].execution_count = 4
    executed.metadata["papermill"] = {"duration": 1.5}
    executed.cells[0].metadata["papermill"] = {"status": "completed"}
    nbformat.write(nb, tmp_path / "a.ipynb")
    nbformat.write(executed, tmp_path / "b.ipynb")
    # nbdime reads nbdime_config.json from the working directory: run from the repo root.
    a, b = str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")
    same = subprocess.run([nbdiff, a, b], cwd=REPO, capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.strip() == "", same.stdout
    executed.cells[0].source = "x = 2"
    nbformat.write(executed, tmp_path / "b.ipynb")
    changed = subprocess.run([nbdiff, a, b], cwd=REPO, capture_output=True, text=True)
    assert "x = 2" in changed.stdout
