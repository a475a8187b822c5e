"""bench/gpu_check.sh: on a machine without a GPU it says so and exits 0; --cpu-dry-run runs every step of
the GPU check tiny on the CPU (torchrun with gloo at world sizes 1 and 2) and writes the report."""

import json
import os
import subprocess
import sys

import pytest
import torch

SCRIPT = "bench/gpu_check.sh"


def _env(**extra):
    return {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}


def test_without_a_gpu_it_says_so_and_exits_0(repo_root, tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", SCRIPT, "--out", str(out)], cwd=repo_root, capture_output=True, text=True,
                          env=_env(CUDA_VISIBLE_DEVICES=""), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no GPU here" in proc.stdout and not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_cpu_dry_run_runs_every_step(repo_root, tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", SCRIPT, "--cpu-dry-run", "--out", str(out)], cwd=repo_root,
                          capture_output=True, text=True, env=_env(), timeout=600)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["total_seconds"] > 0
    steps = report["steps"]
    assert steps["stage1"]["channels_last"] and steps["stage1"]["images_per_s"] > 0
    assert steps["stage1"]["amp_dtype"] == "torch.float32"  # AMP is asked for; the CPU runs fp32
    runs = {(r["what"], r["world_size"]) for r in steps["torchrun"]["runs"]}
    assert runs == {("mmkit.train", 1), ("mmkit.train", 2)}  # the worker itself: tests/test_ddp.py
    assert all(r["seconds"] > 0 and r["backend"] == "gloo" for r in steps["torchrun"]["runs"])
    assert steps["stage2"]["bank_images_per_s"] > 0 and steps["stage2"]["head_samples_per_s"] > 0
    assert steps["loader"]["loader_views_per_s"] > 0 and steps["loader"]["fed_views_per_s"] > 0
    assert 0 < steps["stage2"]["test_accuracy"] <= 1
