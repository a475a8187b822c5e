"""The text features of training rows are out-of-fold: a model that memorises its training texts still
scores chance on them, where in-sample logits would score nearly 100%."""

from pathlib import Path

import numpy as np

from mmkit.data.records import Dataset, Record
from mmkit.text import compute_text_features, make_text_encoder

MEMORISE = dict(C=1000.0, char_ngrams=(9, 9))  # TF-IDF of 9-grams unique to each row: pure memory


def test_training_rows_get_logits_from_models_that_never_saw_them():
    rng = np.random.default_rng(1)
    n = 150
    labels = rng.integers(0, 3, n + 20)  # random labels: only memorising scores above chance
    recs = [
        Record(f"r{i}", Path(f"r{i}.jpg"), f"tok{i}x{rng.integers(1e6)}", f"c{y}")
        for i, y in enumerate(labels)
    ]
    ds = Dataset(
        "toy", ["c0", "c1", "c2"], {"train": recs[:n], "val": recs[n : n + 10], "test": recs[n + 10 :]}
    )
    y = ds.targets("train")
    texts = ds.texts("train")
    in_sample = make_text_encoder("tfidf", classes=ds.classes, **MEMORISE).fit(texts, y).predict_logits(texts)
    assert (in_sample.argmax(1) == y).mean() > 0.95  # the encoder does memorise
    feats, _ = compute_text_features(ds, "tfidf", folds=5, seed=0, **MEMORISE)
    assert feats.out_of_fold
    train = feats.lookup("train", ds.ids("train"))
    assert (train.argmax(1) == y).mean() < 0.5  # chance is 1/3
