"""Papermill runner and the ``mmkit`` command line.

``mmkit run NOTEBOOK [-p NAME VALUE]... [--smoke] [--out DIR]`` executes a notebook (``3``, ``03``, a stem or
a path) headlessly (kernel ``python3``, working directory the repo root) into ``DIR`` and leaves there the
executed notebook and the ``metrics.json`` the notebook wrote. Parameters are checked against the notebook's
``parameters`` cell before anything runs: an unknown name (with "did you mean ..." for a typo) or a value of
the wrong type is an error that lists the valid parameters. A notebook that fails prints the failing cell's
error and the path of the executed notebook first, then the end of that cell's traceback, and exits 1.
``--smoke`` applies the notebook's small CI parameters from ``notebooks/smoke.yaml``.

``mmkit demo --out runs/demo`` generates the synthetic data and runs notebooks 01 -> 05 in order, handing the
stage-1 checkpoint on to the notebooks that take one, then prints the comparison table.

``mmkit gather RUN_DIR... --out DIR`` merges runs of notebook 05 made as separate jobs (``-p seeds [S]``, one
seed per job: a SLURM array, submitit) into one table, figure and verdict (``mmkit.reproduce.gather``).

Example:
    >>> parse_value("3"), parse_value("0.5"), parse_value("None"), parse_value("none"), parse_value("timm:test_resnet")
    (3, 0.5, None, 'none', 'timm:test_resnet')
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from mmkit.config import parse_value  # noqa: F401  (mmkit.run.parse_value: the CLI's value reader)
from mmkit.paths import NOTEBOOKS, ROOT
from mmkit.report import read_metrics

SMOKE_FILE = NOTEBOOKS / "smoke.yaml"
KERNEL = "python3"
DEMO_ORDER = (
    "01_explore_dataset",
    "02_augmentations",
    "03_unimodal_finetune",
    "04_multimodal_fusion",
    "05_reproduce",
)


class ParameterError(ValueError):
    """A parameter the notebook does not declare, or a value of the wrong type."""


def smoke_parameters(notebook: str | Path) -> dict[str, Any]:
    """The small CI parameters of ``notebook`` from ``notebooks/smoke.yaml`` (keyed by file stem)."""
    table = (yaml.safe_load(SMOKE_FILE.read_text()) or {}) if SMOKE_FILE.exists() else {}
    return dict(table.get(Path(notebook).stem, {}) or {})


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The ``parameters`` cell of ``notebook``: name -> {inferred_type_name, default, ...} (papermill)."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    if not params:
        raise ParameterError(
            f"{notebook} has no cell tagged 'parameters'; tag one so it can be parameterized"
        )
    return params


_SCALARS = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list, "dict": dict}


def _type_ok(value: Any, type_name: str) -> bool:
    type_name = type_name.replace(" ", "")
    if type_name.startswith("Optional[") and type_name.endswith("]"):
        return value is None or _type_ok(value, type_name[len("Optional[") : -1])
    if type_name in ("None", "Any", ""):
        return True  # no annotation: nothing to check against
    if type_name.split("[")[0] in ("list", "List", "tuple", "Tuple"):
        return isinstance(value, (list, tuple))
    if type_name.split("[")[0] in ("dict", "Dict"):
        return isinstance(value, dict)
    expected = _SCALARS.get(type_name)
    if expected is None:
        return True  # an annotation we don't model
    if isinstance(value, bool) and type_name != "bool":
        return False  # True is an int to Python, not to a user typing a learning rate
    return isinstance(value, expected)


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """Raise ``ParameterError`` for names the notebook doesn't declare or values of the wrong type."""
    declared = notebook_parameters(notebook)
    listing = "\n".join(f"  {n}: {p['inferred_type_name']} = {p['default']}" for n, p in declared.items())
    problems = []
    for name, value in parameters.items():
        if name not in declared:
            near = difflib.get_close_matches(name, list(declared), n=1, cutoff=0.6)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        elif not _type_ok(value, declared[name]["inferred_type_name"]):
            problems.append(
                f"{name}={value!r} is {type(value).__name__}, expected {declared[name]['inferred_type_name']}"
            )
    if problems:
        raise ParameterError(
            f"{Path(notebook).name}: " + "; ".join(problems) + f".\nValid parameters:\n{listing}"
        )


def execute_notebook(
    notebook: str | Path,
    out_dir: str | Path,
    parameters: Optional[dict[str, Any]] = None,
    smoke: bool = False,
) -> dict[str, Any]:
    """Execute ``notebook`` into ``out_dir`` with papermill and return the metrics it wrote there.

    ``smoke`` applies the notebook's smoke parameters first, then ``parameters`` on top; ``out_dir``
    (absolute) is passed as the notebook's ``out_dir`` parameter.
    """
    import papermill as pm

    notebook = Path(notebook).resolve()
    out_dir = Path(out_dir).resolve()
    params = smoke_parameters(notebook) if smoke else {}
    params.update(parameters or {})
    params["out_dir"] = str(out_dir)
    check_parameters(notebook, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(notebook),
            str(out_dir / notebook.name),
            parameters=params,
            kernel_name=KERNEL,
            cwd=str(ROOT),
            progress_bar=False,
        )
    except pm.PapermillExecutionError as err:
        err.mmkit_output = str(out_dir / notebook.name)  # type: ignore[attr-defined]  # for failure_summary
        raise
    return read_metrics(out_dir)


def _resolve_notebook(name: str) -> Path:
    """A notebook path from what a user types: a path, a stem, or its number (``3``, ``03``, ``03_unimodal``)."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in (NOTEBOOKS / name, NOTEBOOKS / f"{name}.ipynb"):
        if candidate.exists():
            return candidate
    prefix = f"{int(name):02d}_" if name.isdigit() else name
    matches = sorted(NOTEBOOKS.glob(f"{prefix}*.ipynb"))
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb")))
    raise SystemExit(f"mmkit run: no notebook {name!r}; available: {available}")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failure_summary(err: Exception, executed: Path) -> str:
    """The failing cell's error first, then where the executed notebook is, then the cell's last frames.

    Papermill raises ``PapermillExecutionError`` with the cell's traceback as a list of ANSI-coloured lines;
    a user needs the error line and the notebook to open, not papermill's own frames.
    """
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    lines = [
        f"mmkit: {Path(executed).stem} failed in cell [{cell}]: {ename}: {evalue}",
        f"executed notebook (with every output up to the error): {executed}",
    ]
    trace = [_ANSI.sub("", t) for t in getattr(err, "traceback", []) or []]
    tail = "\n".join(trace).strip().splitlines()[-12:]
    if tail:
        lines += ["", "end of the cell's traceback:", *("  " + t for t in tail)]
    return "\n".join(lines)


def run_demo(out: str | Path, smoke: bool = False) -> dict[str, dict[str, Any]]:
    """Run notebooks 01 -> 05 in order into ``out/<stem>/``; stage 1's checkpoint feeds later notebooks."""
    out = Path(out).resolve()
    results: dict[str, dict[str, Any]] = {}
    checkpoint: Optional[str] = None
    for stem in DEMO_ORDER:
        notebook = NOTEBOOKS / f"{stem}.ipynb"
        if not notebook.exists():
            print(f"[mmkit demo] {stem}: not in this checkout, skipped", flush=True)
            continue
        params: dict[str, Any] = {}
        if checkpoint and "checkpoint" in notebook_parameters(notebook):
            params["checkpoint"] = checkpoint
        start = time.perf_counter()
        print(f"[mmkit demo] {stem} ...", flush=True)
        metrics = execute_notebook(notebook, out / stem, params, smoke=smoke)
        print(f"[mmkit demo] {stem} done in {time.perf_counter() - start:.0f} s", flush=True)
        checkpoint = metrics.get("checkpoint", checkpoint)
        results[stem] = metrics
    table = out / "05_reproduce" / "comparison.md"
    if table.exists():
        print(table.read_text())
    return results


def _add_gather_command(sub: Any) -> None:
    gather = sub.add_parser(
        "gather", help="merge runs of notebook 05 (e.g. one seed per job) into one table, figure and verdict"
    )
    gather.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="out folders of `mmkit run 05 -p seeds [S]`"
    )
    gather.add_argument("--out", required=True, help="folder for the merged comparison and metrics.json")
    gather.set_defaults(func=_gather_command)


def _gather_command(args: argparse.Namespace) -> int:
    """``mmkit gather RUN_DIR... --out DIR``: notebook 05's jobs merged as if one run had done every seed."""
    from mmkit.reproduce import gather

    results = gather(args.runs, args.out)
    out = Path(args.out)
    print((out / "comparison.md").read_text())
    print(f"{out / 'metrics.json'}: {len(results['seeds'])} seeds from {len(args.runs)} runs")
    return 0


def _add_predict_parser(sub: Any) -> None:
    predict = sub.add_parser("predict", help="predict a manifest with a saved model (notebook 04's model/)")
    predict.add_argument(
        "model", help="the model folder save_model wrote (e.g. runs/04_multimodal_fusion/model)"
    )
    predict.add_argument(
        "--manifest", required=True, help="CSV (header id,image,text) or JSONL of the inputs"
    )
    predict.add_argument(
        "--out", required=True, help="the predictions CSV: id, pred, one p_<class> per class"
    )
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--image-col", default="image")
    predict.add_argument("--text-col", default="text")
    predict.add_argument("--id-col", default="id")
    predict.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    """``mmkit predict MODEL --manifest FILE --out preds.csv``: ``mmkit.model.predict_manifest``."""
    from mmkit.model import predict_manifest

    try:
        out = predict_manifest(
            args.model, args.manifest, args.out, device=args.device,
            image_col=args.image_col, text_col=args.text_col, id_col=args.id_col,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        print(f"mmkit predict: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _cmd_run(args: argparse.Namespace) -> None:
    notebook = _resolve_notebook(args.notebook)
    out = Path(args.out or ROOT / "runs" / notebook.stem)
    params = {name: parse_value(value) for name, value in args.parameter}
    metrics = execute_notebook(notebook, out, params, smoke=args.smoke)
    print(f"{out / notebook.name}\n{out / 'metrics.json'}: {len(metrics)} entries")


def _cmd_demo(args: argparse.Namespace) -> None:
    run_demo(args.out, smoke=args.smoke)


def _cmd_params(args: argparse.Namespace) -> None:
    for name, p in notebook_parameters(_resolve_notebook(args.notebook)).items():
        print(f"{name}: {p['inferred_type_name']} = {p['default']}")


def build_parser() -> argparse.ArgumentParser:
    """The ``mmkit`` parser. A subcommand is one ``sub.add_parser(...)`` with ``set_defaults(func=...)``."""
    parser = argparse.ArgumentParser(prog="mmkit", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook with papermill")
    run.add_argument("notebook", help="a path, or a notebook under notebooks/: 3, 03 or 03_unimodal_finetune")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    run.add_argument("--smoke", action="store_true", help="apply the notebook's CI parameters (smoke.yaml)")
    run.add_argument("--out", default=None, help="output folder (default runs/<notebook stem>)")
    run.set_defaults(func=_cmd_run)
    demo = sub.add_parser("demo", help="synthetic data, then notebooks 01 -> 05, then the comparison table")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--smoke", action="store_true")
    demo.set_defaults(func=_cmd_demo)
    params = sub.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook")
    params.set_defaults(func=_cmd_params)
    _add_predict_parser(sub)
    _add_gather_command(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)  # None, or an exit status (mmkit predict)
    except ParameterError as err:
        print(f"mmkit: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if type(err).__name__ != "PapermillExecutionError":
            raise
        print(failure_summary(err, _executed_path(err, args)), file=sys.stderr)
        return 1
    return code or 0


def _executed_path(err: Exception, args: argparse.Namespace) -> Path:
    """The executed notebook of a failed run (papermill wrote it before raising)."""
    path = getattr(err, "mmkit_output", None)
    if path:
        return Path(path)
    notebook = _resolve_notebook(args.notebook) if getattr(args, "notebook", None) else None
    out = Path(getattr(args, "out", None) or ROOT / "runs" / (notebook.stem if notebook else ""))
    return out / notebook.name if notebook else out


if __name__ == "__main__":
    raise SystemExit(main())
