"""check_inputs: a missing file a parameter names is reported at once, with the fix, in one sentence."""

import time

import pytest

from mmkit.checks import InputError, check_inputs, input_problems
from mmkit.run import NOTEBOOKS, execute_notebook


def test_nothing_to_report_for_the_synthetic_defaults():
    assert input_problems({"dataset": "synthetic_food101", "data_root": None, "checkpoint": None}) == []
    check_inputs({"dataset": "synthetic_fpus23", "preset": "seed", "pretrained": "timm"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"checkpoint": "runs/03_unimodal_finetune/best.pt"},
         "checkpoint runs/03_unimodal_finetune/best.pt does not exist: run notebook 03 first (its best.pt), "
         "or set checkpoint=None"),
        ({"dataset": "upmc_food101"}, "dataset='upmc_food101' needs data_root: set data_root to"),
        ({"dataset": "fpus23", "data_root": "/no/such/fpus"}, "data_root /no/such/fpus does not exist"),
        ({"dataset": "manifest", "data_root": "/no/such.csv"}, "data_root /no/such.csv does not exist"),
        ({"dataset": "hf"}, "dataset='hf' needs hf_dataset: set hf_dataset to"),
        ({"split_file": "/no/val.txt"}, "split_file /no/val.txt does not exist: fix the path, or set split_file=None"),
        ({"pretrained": "/no/w.pth"}, "set pretrained=None"),
        ({"preset": "runs/02/preset_food.json"}, "save one with notebook 02's explorer, or set preset='seed'"),
    ],
)  # fmt: skip
def test_each_missing_input_names_its_parameter_and_fix(params, expected):
    with pytest.raises(InputError) as err:
        check_inputs(params, "04")
    assert expected in str(err.value)
    assert err.value._render_traceback_() == [f"InputError: {err.value}"]  # IPython shows one line


def test_existing_files_pass(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("image,text,label\n")
    check_inputs(
        {"checkpoint": str(tmp_path / "best.pt"), "dataset": "manifest", "data_root": str(tmp_path / "m.csv")}
    )
    check_inputs({"dataset": "fpus23", "data_root": str(tmp_path)})


def test_notebook04_stops_before_any_slow_step(tmp_path):
    start = time.perf_counter()
    with pytest.raises(Exception) as err:
        execute_notebook(
            NOTEBOOKS / "04_multimodal_fusion.ipynb",
            tmp_path / "o",
            {"checkpoint": "nowhere/best.pt"},
            smoke=True,
        )
    assert "checkpoint nowhere/best.pt does not exist: run notebook 03 first" in str(err.value)
    assert time.perf_counter() - start < 60  # the kernel's start; no text, bank or training step ran
    assert not (tmp_path / "o" / "config.json").exists()
