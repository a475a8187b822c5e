"""The papermill runner: parameter checking, smoke parameters, metrics read back, the CLI."""

import json
import subprocess
import sys

import nbformat
import pytest

from mmkit import run
from mmkit.run import ParameterError, check_parameters, execute_notebook, parse_value

PARAMS = """from typing import Optional
seed: int = 0
lr: float = 0.1
backbone: str = "timm:test_resnet"
copies: Optional[int] = None
amp: bool = True
out_dir: str = "runs/tiny"
"""
BODY = """from mmkit.report import write_metrics
write_metrics(out_dir, {"seed": seed, "lr": lr, "backbone": backbone, "copies": copies, "amp": amp})
"""


@pytest.fixture
def tiny_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5
    assert parse_value("True") is True and parse_value("false") is False
    assert parse_value("None") is None and parse_value("[1, 2]") == [1, 2]
    assert parse_value("none") == "none"  # train_blocks="none" must not become None
    assert parse_value("timm:test_resnet") == "timm:test_resnet"


def test_unknown_parameter_lists_valid_ones(tiny_notebook):
    with pytest.raises(ParameterError) as err:
        check_parameters(tiny_notebook, {"sed": 1})
    msg = str(err.value)
    assert "unknown parameter 'sed'" in msg
    for name in ("seed", "lr", "backbone", "copies", "amp", "out_dir"):
        assert name in msg


@pytest.mark.parametrize(
    "name,value",
    [("seed", "3"), ("seed", 0.5), ("seed", True), ("lr", "fast"), ("amp", 1), ("copies", "two")],
)
def test_wrong_type_is_an_error(tiny_notebook, name, value):
    with pytest.raises(ParameterError, match=name):
        check_parameters(tiny_notebook, {name: value})


def test_right_types_pass(tiny_notebook):
    check_parameters(tiny_notebook, {"seed": 3, "lr": 1, "copies": None, "amp": False, "backbone": "x"})
    check_parameters(tiny_notebook, {"copies": 4})


def test_notebook_without_parameters_cell_is_an_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        check_parameters(path, {"x": 2})


def test_execute_applies_smoke_then_overrides(tiny_notebook, tmp_path, monkeypatch):
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text("tiny:\n  seed: 7\n  lr: 0.01\n")
    monkeypatch.setattr(run, "SMOKE_FILE", smoke)
    out = tmp_path / "out"
    metrics = execute_notebook(tiny_notebook, out, {"lr": 0.5, "copies": 4}, smoke=True)
    assert metrics == {"seed": 7, "lr": 0.5, "backbone": "timm:test_resnet", "copies": 4, "amp": True}
    executed = nbformat.read(out / "tiny.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"]["out_dir"] == str(out.resolve())


def test_cli_rejects_bad_parameter_before_running(tiny_notebook, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmkit.run",
            "run",
            str(tiny_notebook),
            "-p",
            "seed",
            "x",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "seed='x' is str, expected int" in proc.stderr and "Valid parameters" in proc.stderr
    assert not (tmp_path / "o" / "tiny.ipynb").exists()


def test_cli_runs_notebook_and_writes_metrics(tiny_notebook, tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "mmkit.run", "run", str(tiny_notebook), "-p", "seed", "5", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metrics.json").read_text())["seed"] == 5
    assert (out / "tiny.ipynb").exists()


def test_a_number_finds_its_notebook():
    assert run._resolve_notebook("3").name == "03_unimodal_finetune.ipynb"
    assert run._resolve_notebook("03").name == "03_unimodal_finetune.ipynb"
    assert run._resolve_notebook("01_explore").name == "01_explore_dataset.ipynb"
    with pytest.raises(SystemExit, match="no notebook '9'; available: 01_explore_dataset"):
        run._resolve_notebook("9")


def test_a_typo_gets_did_you_mean(tiny_notebook):
    with pytest.raises(ParameterError, match=r"unknown parameter 'seeed' \(did you mean 'seed'\?\)"):
        check_parameters(tiny_notebook, {"seeed": 1})
    with pytest.raises(ParameterError) as err:
        check_parameters(tiny_notebook, {"zzz": 1})
    assert "did you mean" not in str(err.value)


def test_a_failed_notebook_prints_the_cell_error_and_the_notebook_first(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("out_dir: str = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise KeyError('accuracy')"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "o"
    proc = subprocess.run(
        [sys.executable, "-m", "mmkit.run", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    lines = lines[
        next(i for i, t in enumerate(lines) if t.startswith("mmkit:")) :
    ]  # after the kernel's own logs
    assert lines[0].startswith("mmkit: broken failed in cell [") and lines[0].endswith("KeyError: 'accuracy'")
    assert lines[1] == f"executed notebook (with every output up to the error): {out / 'broken.ipynb'}"
    assert (out / "broken.ipynb").exists()
    assert "papermill" not in proc.stderr and len(lines) < 25


@pytest.mark.parametrize("stem", ["04_multimodal_fusion", "05_reproduce"])
def test_bank_views_takes_a_count_or_epochs(stem):
    # bank_views="epochs" (each cached view drawn once: the paper's stage 2) must pass the command line's
    # type check in both notebooks that build a bank, as an integer K does
    from mmkit.run import NOTEBOOKS

    notebook = NOTEBOOKS / f"{stem}.ipynb"
    check_parameters(notebook, {"bank_views": "epochs"})
    check_parameters(notebook, {"bank_views": 8})
