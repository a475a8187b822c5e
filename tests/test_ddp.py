"""The stage-1 trainer under torchrun with 2 CPU processes (gloo): every training sample is seen exactly
once per epoch across ranks, and the ranks end with identical weights and identical evaluations. The worker
checks that every tensor handed to a collective lives on ``collective_device`` (NCCL's rule); a val split
smaller than the world and loaders that give each rank the whole split are run too."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmkit.data.synthetic import make_synthetic_food101

WORKER = Path(__file__).with_name("ddp_worker.py")
pytestmark = pytest.mark.slow  # two processes: left out of -m "not slow"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_ddp(tmp_path, repo_root):
    data = make_synthetic_food101(
        tmp_path / "food", n_classes=3, train_per_class=7, test_per_class=3, image_size=32
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(WORKER), "--data", str(data), "--out", str(tmp_path)]
    # its own session, so a hang (the bug this guards against) is killed with all its workers
    proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"the two ranks hung (a collective one rank skipped?): {stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-4000:]
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
    # the ranks' last batches differ in size (an odd shard), and the loss is still one per-sample mean
    last = [r["batch_sizes"][0][-1] for r in ranks]
    assert last[0] != last[1] and len(ranks[0]["batch_sizes"][0]) == len(ranks[1]["batch_sizes"][0])
    # every reduction went through the collective-device placement (the worker asserted it per call)
    for r in ranks:
        ops = Counter(c["op"] for c in r["collectives"])
        assert ops["all_reduce"] >= 1 + 2 * 2 and ops["broadcast"] >= 1  # has_val, loss per epoch, buffers
        assert {c["device"] for c in r["collectives"]} == {r["collective_device"]} == {r["device"]}
    # predict on loaders that are not sharded: each row once, in dataset order, not once per rank
    n_test = ranks[0]["n_test"]
    for r in ranks:
        assert r["test_index_whole"] == r["test_index_list"] == list(range(n_test))
    # val of 1 sample on 2 ranks: rank 1 has no val batch, yet both evaluated (no hang) and agree
    assert sorted(r["tiny_val_batches"] for r in ranks) == [0, 1]
    assert ranks[0]["tiny_history"][0]["val_score"] == ranks[1]["tiny_history"][0]["val_score"]
    assert "val_accuracy" in ranks[1]["tiny_history"][0]
    # the feature bank: rank 0 encoded it, rank 1 only opened the same folder; a failed build fails both
    assert ranks[0]["bank_extracts"] > 0 and ranks[1]["bank_extracts"] == 0
    assert ranks[0]["bank_path"] == ranks[1]["bank_path"] and ranks[0]["bank_sum"] == ranks[1]["bank_sum"]
    assert not ranks[0]["bank_reused"] and not ranks[1]["bank_reused"]
    assert "no_such_model" in ranks[0]["bank_error"]
    assert ranks[1]["bank_error"].startswith("RuntimeError: rank 0 could not build the feature bank")
    # rank 0 wrote the checkpoint, and it holds the weights both ranks ended with
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], a[k]) for k in a)
