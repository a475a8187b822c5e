"""Fail early: the files a notebook's parameters name are checked before any slow step runs.

Each notebook calls ``check_inputs(params, notebook)`` right after its parameters cell. A missing
checkpoint, data folder, manifest, split file or preset file is reported in one sentence that names the
parameter and the fix (e.g. "run notebook 03 first, or set checkpoint=None"), instead of a bare
FileNotFoundError twenty seconds later. In a notebook the error shows as that sentence alone, without a
traceback into mmkit.

Example:
    >>> check_inputs({"dataset": "synthetic_food101", "checkpoint": None}, "04_multimodal_fusion")
    >>> check_inputs({"checkpoint": "runs/nowhere/best.pt"}, "04_multimodal_fusion")
    Traceback (most recent call last):
    ...
    mmkit.checks.InputError: checkpoint runs/nowhere/best.pt does not exist: run notebook 03 first (its best.pt), or set checkpoint=None
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

# Datasets read from a folder (or manifest file) the user names; the synthetic ones are generated.
_NEEDS_ROOT = {
    "upmc_food101": "the UPMC Food-101 folder (images/ and the title CSVs)",
    "fpus23": "the FPUS23 folder (four_poses/ with its CVAT annotations)",
    "manifest": "the manifest file (CSV, JSONL or Parquet)",
}
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class InputError(ValueError):
    """A parameter names a file or folder that is not there (the message says what to do)."""

    def _render_traceback_(self) -> list[str]:  # IPython: show the sentence, not a traceback into mmkit
        return [f"InputError: {self}"]


def _missing(path: Any, folder: bool = False) -> bool:
    p = Path(str(path)).expanduser()
    return not (p.is_dir() if folder else p.exists())


def input_problems(params: dict[str, Any], notebook: Optional[str] = None) -> list[str]:
    """Every problem ``check_inputs`` would report, one sentence each (empty when all is well)."""
    where = f"notebook {notebook}'s" if notebook else "the"
    problems = []
    dataset = params.get("dataset")
    root = params.get("data_root")
    if dataset in _NEEDS_ROOT and root is None:
        problems.append(
            f"dataset={dataset!r} needs data_root: set data_root to {_NEEDS_ROOT[dataset]}, or use "
            f"dataset='synthetic_food101'"
        )
    elif root is not None and dataset in _NEEDS_ROOT and _missing(root, folder=dataset != "manifest"):
        problems.append(
            f"data_root {root} does not exist: set data_root to {_NEEDS_ROOT[dataset]} (in {where} "
            f"parameters cell)"
        )
    if dataset == "hf" and not params.get("hf_dataset"):
        problems.append(
            "dataset='hf' needs hf_dataset: set hf_dataset to a save_to_disk folder or a hub name"
        )
    for name in ("manifest", "split_file"):
        value = params.get(name)
        if value is not None and _missing(value):
            problems.append(f"{name} {value} does not exist: fix the path, or set {name}=None")
    checkpoint = params.get("checkpoint")
    if checkpoint is not None and _missing(checkpoint):
        problems.append(
            f"checkpoint {checkpoint} does not exist: run notebook 03 first (its best.pt), or set "
            f"checkpoint=None"
        )
    pretrained = params.get("pretrained")
    if isinstance(pretrained, str) and pretrained.endswith(_WEIGHT_SUFFIXES) and _missing(pretrained):
        problems.append(
            f"pretrained {pretrained} does not exist: point it at a local weights file, or set "
            f"pretrained=None (random init)"
        )
    preset = params.get("preset")
    if isinstance(preset, str) and Path(preset).suffix.lower() in (".json", ".yaml", ".yml"):
        if _missing(preset):
            problems.append(
                f"preset file {preset} does not exist: save one with notebook 02's explorer, or set "
                f"preset='seed'"
            )
    return problems


def check_inputs(params: dict[str, Any], notebook: Optional[str] = None) -> None:
    """Raise ``InputError`` naming the parameter to fix when a file or folder the parameters name is
    missing (checkpoint, data_root, manifest, split_file, pretrained weights file, preset file).

    Grouped data with too few groups in train for the folds is not refused here: only the loaded split
    says whether it is short (``load_dataset`` warns, and the fold step stops before training, with fixes).

    ``params``: the notebook's parameters (e.g. ``globals()``; other names are ignored); ``notebook``:
    its name, used in the message.
    """
    problems = input_problems(params, notebook)
    if problems:
        raise InputError("; ".join(problems))


__all__ = ["InputError", "check_inputs", "input_problems"]
