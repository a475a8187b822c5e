"""Notebook 05's numbers and where its time goes: every row's mean ± std, the verdict's family, seconds per
phase (stage-1 variants, cross-fitted stage 1, bank builds, text features, stage-2 heads) and the threads the
run used, from a run of the notebook at its defaults (the demo's) or from a finished run folder.

    python bench/bench_reproduce.py                       # runs notebook 05 with its defaults into a temp dir
    python bench/bench_reproduce.py --run-dir runs/demo/05_reproduce   # reads a finished run's folder

Results go to ``bench/results/reproduce.json``. The thread counts are the ones the run recorded in its
``grid.json`` (torch.get_num_threads() and OMP_NUM_THREADS inside the notebook's kernel), not this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=None, help="a finished run of notebook 05 (else: run it now)")
    p.add_argument("--wall-s", type=float, default=None, help="the run's wall time, when --run-dir is given")
    p.add_argument("--note", default=None, help="how the run was measured (load, CPU time)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reproduce.json"))
    args = p.parse_args()

    import pandas as pd

    from mmkit.reproduce import time_breakdown

    wall = args.wall_s
    if args.run_dir is None:
        from mmkit.run import NOTEBOOKS, execute_notebook

        run_dir = Path(tempfile.mkdtemp(prefix="bench_reproduce_"))
        start = time.perf_counter()
        execute_notebook(NOTEBOOKS / "05_reproduce.ipynb", run_dir)
        wall = time.perf_counter() - start
    else:
        run_dir = Path(args.run_dir)
    timings = pd.read_csv(run_dir / "timings.csv")
    fresh = timings[~timings["reused"]]
    table = time_breakdown(fresh)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    grid = json.loads((run_dir / "grid.json").read_text())
    if "threads" not in grid:
        raise SystemExit(f"{run_dir / 'grid.json'} records no threads: rerun notebook 05 with this mmkit")
    payload = {
        "benchmark": "notebook 05: every row's test mean ± std over seeds, the verdict's family, and seconds "
        "per phase summed over seeds (cells read back from earlier runs left out)",
        "run_dir": str(run_dir),
        "dataset": metrics.get("dataset"),
        "metric": metrics.get("metric"),
        "n_seeds": metrics.get("n_seeds"),
        "seeds": metrics.get("seeds"),
        # mean, std (ddof=1; None with one seed), n, and each row's K / views seen / trainable share
        "rows": metrics.get("summary"),
        "verdict": metrics.get("verdict"),
        "cross_fitting": metrics.get("cross_fitting"),
        "notebook_wall_s": wall,
        "timed_s": float(fresh["seconds"].sum()),
        "per_phase_s": table["total"].round(2).to_dict(),
        "per_phase_and_seed_s": {c: table[c].round(2).to_dict() for c in table.columns if c != "total"},
        "settings": json.loads((run_dir / "config.json").read_text())
        if (run_dir / "config.json").exists()
        else {},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads_seen_by_the_run": grid["threads"],
        },
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
