"""The stage-1 trainer under torchrun with 2 CPU processes (gloo): every training sample is seen exactly
once per epoch across ranks, and the ranks end with identical weights and identical evaluations."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkit.data.synthetic import make_synthetic_food101

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_ddp(tmp_path, repo_root):
    data = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=7, test_per_class=3, image_size=32
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(WORKER), "--data", str(data), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    n = ranks[0]["n_train"]
    assert n % 2 == 1  # an odd count: the ranks' shards differ by one sample, and none is dropped
    copies = 2
    for epoch in range(2):
        per_rank = [Counter(r["seen"][epoch]) for r in ranks]
        assert not set(per_rank[0]) & set(per_rank[1])  # a sample (and all its copies) lives on one rank
        both = per_rank[0] + per_rank[1]
        assert sorted(both) == list(range(n)) and set(both.values()) == {copies}
        # shards differ by at most one sample; both ranks still step in lockstep (else DDP would hang)
        assert abs(len(ranks[0]["seen"][epoch]) - len(ranks[1]["seen"][epoch])) <= copies
    assert ranks[0]["seen"][0] != ranks[0]["seen"][1]  # reshuffled each epoch
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # BatchNorm buffers included
    assert ranks[0]["history"] == [
        dict(h, seconds=r["seconds"]) for h, r in zip(ranks[1]["history"], ranks[0]["history"])
    ]
    # evaluation is gathered from both ranks' shards and put back in dataset order
    assert ranks[0]["test_index"] == ranks[1]["test_index"] == list(range(len(ranks[0]["test_index"])))
    assert np.array_equal(np.array(ranks[0]["test_scores"]), np.array(ranks[1]["test_scores"]))
    # rank 0 wrote the checkpoint, and it holds the weights both ranks ended with
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], a[k]) for k in a)
