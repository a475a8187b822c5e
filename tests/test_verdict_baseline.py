"""The verdict's baseline is the single-modality row with the best validation score, whatever test says."""

import numpy as np
import pandas as pd

from mmkit.reproduce import predictions_path, verdict


def test_baseline_is_the_best_single_modality_row_on_validation(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    ids = np.array([f"t{i}" for i in range(40)])
    # val prefers "text only", test prefers "image frozen": only a choice made on val names "text only"
    rows = [
        ("text only", "single modality", 0.80, 0.60),
        ("image frozen", "single modality", 0.70, 0.90),
        ("image fine-tuned", "stage 1", 0.75, 0.85),
        ("fusion", "fusion", 0.60, 0.95),
    ]
    records = []
    for seed in (0, 1):
        for method, group, val, test in rows:
            records.append(
                {"method": method, "group": group, "seed": seed, "val_accuracy": val, "test_accuracy": test}
            )
            path = predictions_path(tmp_path, seed, method)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, scores=rng.normal(size=(40, 3)), targets=y, ids=ids)
    v = verdict(pd.DataFrame(records), [tmp_path], "multiclass", "fusion", n_boot=20)
    assert v["baseline"] == "text only"
    assert v["baseline_chosen_on"] == "val_accuracy"
