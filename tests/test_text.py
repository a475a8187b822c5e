"""Text encoders, out-of-fold stacking (no row ever predicts itself) and the id-keyed join."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mmkit.data import Dataset, Record
from mmkit.text import (
    EmbeddingEncoder,
    TextEncoder,
    TextFeatures,
    compute_text_features,
    encode_labels,
    fold_indices,
    make_text_encoder,
    out_of_fold_logits,
)


def _toy_texts(n: int, n_classes: int = 3, seed: int = 0) -> tuple[list[str], list[int]]:
    """Each text has two class words and two shared filler words: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    vocab = {c: [f"cls{c}word{i}" for i in range(6)] for c in range(n_classes)}
    filler = [f"filler{i}" for i in range(10)]
    texts, labels = [], []
    for i in range(n):
        c = i % n_classes
        texts.append(" ".join([*rng.choice(vocab[c], 2), *rng.choice(filler, 2)]))
        labels.append(c)
    return texts, labels


class Memoriser(TextEncoder):
    """1-nearest-neighbour on exact strings: perfect on rows it saw, no idea on any other row."""

    name = "memoriser"
    seen_by_fit: list[set[str]] = []

    def __init__(self, classes=None):
        super().__init__(classes)

    def fit(self, texts, labels):
        y = self._targets(labels, len(texts))
        self.table = dict(zip(texts, y))
        Memoriser.seen_by_fit.append(set(texts))
        return self

    def predict_logits(self, texts):
        out = np.zeros((len(texts), len(self.classes_)), np.float32)
        for i, t in enumerate(texts):
            if t in self.table:
                out[i, self.table[t]] = 10.0
        return out


def test_out_of_fold_logits_never_use_their_own_row():
    rng = np.random.default_rng(0)
    n, n_classes = 120, 4
    texts = [f"row{i:04d} unique{rng.integers(1e9)}" for i in range(n)]  # nothing shared between rows
    labels = rng.integers(0, n_classes, n)  # random labels: only memorising can score
    Memoriser.seen_by_fit = []
    in_sample = Memoriser(classes=list(range(n_classes))).fit(texts, labels).predict_logits(texts)
    assert (in_sample.argmax(1) == labels).mean() == 1.0

    Memoriser.seen_by_fit = []
    oof = out_of_fold_logits(
        lambda: Memoriser(classes=list(range(n_classes))),
        texts,
        labels,
        folds=5,
        classes=list(range(n_classes)),
    )
    # chance: the held-out memoriser outputs all zeros, so argmax says class 0 for every row
    assert (oof.argmax(1) == labels).mean() == pytest.approx((labels == 0).mean())
    assert (oof == 0).all()
    # and directly: the fold that predicted row i was fitted on rows that do not include row i
    assert len(Memoriser.seen_by_fit) == 5
    for seen in Memoriser.seen_by_fit:
        assert len(seen) == n - n // 5


def test_real_encoders_memorise_in_sample_but_score_chance_out_of_fold():
    rng = np.random.default_rng(1)
    n = 150
    texts = [f"tok{i}x{rng.integers(1e6)}" for i in range(n)]
    labels = rng.integers(0, 3, n)
    enc = make_text_encoder("tfidf", C=1000.0, char_ngrams=(9, 9)).fit(texts, labels)
    assert (enc.predict_logits(texts).argmax(1) == labels).mean() > 0.95
    oof = out_of_fold_logits("tfidf", texts, labels, folds=5, C=1000.0, char_ngrams=(9, 9))
    assert (oof.argmax(1) == labels).mean() < 0.5  # chance is 1/3


def test_grouped_folds_keep_groups_apart():
    groups = [f"stream{i // 7}" for i in range(70)]
    y = np.array([i % 2 for i in range(70)])
    for tr, va in fold_indices(70, 5, 0, y, groups):
        assert not {groups[i] for i in tr} & {groups[i] for i in va}


def test_tfidf_and_bow_mlp_learn_and_are_seeded():
    texts, labels = _toy_texts(90)
    test_texts, test_labels = _toy_texts(60, seed=9)
    for name, opts in [("tfidf", {}), ("bow-mlp", {"epochs": 15})]:
        enc = make_text_encoder(name, **opts).fit(texts, labels)
        logits = enc.predict_logits(test_texts)
        assert logits.shape == (60, 3) and enc.classes_ == [0, 1, 2]
        assert (logits.argmax(1) == np.array(test_labels)).mean() > 0.9, name
        assert np.allclose(enc.transform(test_texts), logits)
    a = make_text_encoder("bow-mlp", epochs=2, seed=3).fit(texts, labels).predict_logits(test_texts)
    b = make_text_encoder("bow-mlp", epochs=2, seed=3).fit(texts, labels).predict_logits(test_texts)
    c = make_text_encoder("bow-mlp", epochs=2, seed=4).fit(texts, labels).predict_logits(test_texts)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_columns_follow_given_classes_even_when_a_fold_lacks_one():
    texts, labels = _toy_texts(30)
    names = ["a", "b", "c", "never_seen"]
    enc = make_text_encoder("tfidf", classes=names).fit(texts, labels)
    logits = enc.predict_logits(texts)
    assert logits.shape == (30, 4) and enc.classes_ == names
    assert (logits[:, 3] < logits[:, :3].max(1)).all()
    assert enc.predict(texts[:3]) == ["a", "b", "c"]


def test_multilabel_one_vs_rest():
    texts, labels = _toy_texts(120, n_classes=4)
    # multi-label: class word sets for label k, plus label 3 whenever the class is 0 (co-occurrence)
    Y = np.zeros((120, 4), np.float32)
    Y[np.arange(120), labels] = 1
    Y[np.array(labels) == 0, 3] = 1
    for name, opts in [("tfidf", {}), ("bow-mlp", {"epochs": 20})]:
        enc = make_text_encoder(name, **opts).fit(texts, Y)
        assert enc.multilabel_
        assert ((enc.predict_logits(texts) > 0) == (Y > 0)).mean() > 0.95, name
    oof = out_of_fold_logits("tfidf", texts, Y, folds=3)
    assert oof.shape == (120, 4) and ((oof > 0) == (Y > 0)).mean() > 0.9
    y, classes, multi = encode_labels([["head"], ["arm", "legs"], []], ["head", "arm", "abdomen", "legs"])
    assert multi and y.tolist() == [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]]


def _dataset(tmp_path: Path, n_train: int = 60) -> Dataset:
    texts, labels = _toy_texts(n_train + 20)
    recs = [
        Record(id=f"img_{i:03d}.jpg", image_path=tmp_path / f"{i}.jpg", text=t, label=f"c{y}")
        for i, (t, y) in enumerate(zip(texts, labels))
    ]
    return Dataset(
        name="toy",
        classes=["c0", "c1", "c2"],
        splits={"train": recs[:n_train], "val": recs[n_train : n_train + 10], "test": recs[n_train + 10 :]},
    )


def test_feature_table_joins_by_id_after_shuffling(tmp_path):
    ds = _dataset(tmp_path)
    feats, enc = compute_text_features(ds, "tfidf", folds=4, seed=0)
    assert feats.kind == "logits" and feats.out_of_fold
    assert feats.values["train"].shape == (60, 3)
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        recs = ds.records(split)
        order = rng.permutation(len(recs))
        shuffled = [recs[i] for i in order]
        got = feats.lookup(split, [r.id for r in shuffled])
        assert np.array_equal(got, feats.values[split][order])
        # each shuffled row still gets its own text's features (val/test: recompute from its text)
        if split != "train":
            assert np.allclose(got, enc.predict_logits([r.text for r in shuffled]), atol=1e-5)
        assert not np.array_equal(got, feats.values[split])  # a positional join would have gone wrong
    with pytest.raises(KeyError, match="no tfidf text features"):
        feats.lookup("val", ["not_an_id"])
    # a row dropped from the dataset does not shift anybody's features
    kept = ds.records("train")[1:]
    assert np.array_equal(feats.lookup("train", [r.id for r in kept]), feats.values["train"][1:])
    feats.save(str(tmp_path / "feats.npz"))
    back = TextFeatures.load(str(tmp_path / "feats.npz"))
    assert back.kind == "logits" and back.out_of_fold and back.classes == ["c0", "c1", "c2"]
    ids = [r.id for r in ds.records("val")][::-1]
    assert np.array_equal(back.lookup("val", ids), feats.lookup("val", ids))


def test_minilm_offline_package():
    enc = make_text_encoder("minilm")
    emb = enc.transform(["a bowl of pho with beef", "vietnamese beef noodle soup", "a chocolate cake"])
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    texts, labels = _toy_texts(30)
    assert enc.fit(texts, labels).predict_logits(texts[:4]).shape == (4, 3)


def test_open_clip_text_tower_tiny():
    pytest.importorskip("open_clip")
    enc = make_text_encoder("open_clip:mmkit-tiny-vit", seed=0)  # the tiny config mmkit.models registers
    emb = enc.transform(["a photo of pho", "sushi rolls", "a photo of pho"])
    assert emb.shape == (3, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
    texts, labels = _toy_texts(24)
    assert enc.fit(texts, labels).predict_logits(texts).shape == (24, 3)


def test_hf_dispatch_is_lazy(monkeypatch):
    calls = {}

    class FakeHF(TextEncoder):
        def __init__(self, name_or_path, **options):
            super().__init__(options.get("classes"))
            calls["args"] = (name_or_path, options)

    fake = types.ModuleType("mmkit.text_hf")
    fake.HFTextEncoder = FakeHF
    monkeypatch.setitem(sys.modules, "mmkit.text_hf", fake)
    enc = make_text_encoder("hf:/models/bert-tiny", mode="cls")
    assert isinstance(enc, FakeHF) and calls["args"] == ("/models/bert-tiny", {"mode": "cls"})
    with pytest.raises(ValueError, match="unknown text encoder"):
        make_text_encoder("word2vec")


class CountingEmbedder(EmbeddingEncoder):
    """A frozen embedder that counts the texts it embeds (a fixed vector per distinct text)."""

    name = "counting"
    embedded: list[str] = []

    def embed(self, texts):
        CountingEmbedder.embedded.extend(texts)
        return np.stack(
            [np.random.default_rng(sum(map(ord, t))).normal(size=8).astype(np.float32) for t in texts]
        ).reshape(len(texts), 8)


@pytest.mark.parametrize("features", ["embedding", "logits"])
def test_frozen_embedder_embeds_each_text_once(tmp_path, monkeypatch, features):
    ds = _dataset(tmp_path)
    monkeypatch.setattr("mmkit.text.make_text_encoder", lambda name, **options: CountingEmbedder(**options))
    CountingEmbedder.embedded = []
    feats, enc = compute_text_features(ds, "counting", features=features, folds=3, seed=0)
    every = [r.text for split in ("train", "val", "test") for r in ds.records(split)]
    assert sorted(CountingEmbedder.embedded) == sorted(every)  # each split's texts embedded exactly once
    train_texts = [r.text for r in ds.records("train")]
    if features == "embedding":
        assert np.array_equal(feats.values["train"], enc.embed(train_texts))
    else:  # out-of-fold probes on the same embeddings: each row's logits from a probe that never saw it
        assert feats.out_of_fold and feats.values["train"].shape == (len(train_texts), 3)
        assert np.allclose(feats.values["val"], enc.predict_logits([r.text for r in ds.records("val")]))


def test_one_fold_assignment_for_text_and_stage1():
    # compute_text_features draws its folds with mmkit.folds.assign_folds (the seed's "folds" stream): passing
    # that assignment explicitly changes nothing, and a repeated image keeps its rows in one fold.
    from pathlib import Path

    from mmkit.data import Dataset, Record
    from mmkit.folds import assign_folds, fold_groups

    recs = [
        Record(f"r{i}", Path(f"img{i // 2}.jpg"), f"{'apple' if i % 4 < 2 else 'pear'} {i}", "ab"[i % 4 // 2])
        for i in range(24)
    ]
    ds = Dataset("t", ["a", "b"], {"train": recs, "val": [], "test": []})
    assert fold_groups(recs) == [str(r.image_path) for r in recs]  # no groups, repeated images: by image
    fold_of = assign_folds(recs, 3, seed=5, y=ds.targets("train"))
    for i in range(0, 24, 2):
        assert fold_of[i] == fold_of[i + 1]  # the two captions of one image never straddle a fold
    a, _ = compute_text_features(ds, "tfidf", folds=3, seed=5)
    b, _ = compute_text_features(ds, "tfidf", folds=3, seed=5, fold_of=fold_of)
    np.testing.assert_array_equal(a.values["train"], b.values["train"])
    assert not np.array_equal(fold_of, assign_folds(recs, 3, seed=6, y=ds.targets("train")))


def test_grouped_folds_shuffle_by_seed_without_groupkfold_shuffle(monkeypatch):
    # GroupKFold(shuffle=True) exists only from scikit-learn 1.6 (pyproject allows 1.3): never pass it
    import sklearn.model_selection as ms

    real = ms.GroupKFold

    def old_groupkfold(n_splits=5, **kw):
        assert not kw, f"GroupKFold{kw} needs scikit-learn >= 1.6"
        return real(n_splits)

    monkeypatch.setattr(ms, "GroupKFold", old_groupkfold)
    groups = [f"stream{i // 3}" for i in range(36)]  # 12 groups of 3: every split is a tie on size
    runs = {seed: fold_indices(36, 4, seed, groups=groups) for seed in (0, 1)}
    for folds in runs.values():
        held = np.concatenate([va for _, va in folds])
        assert sorted(held) == list(range(36))
        for tr, va in folds:
            assert not {groups[i] for i in tr} & {groups[i] for i in va}
    assert [sorted(va) for _, va in runs[0]] != [sorted(va) for _, va in runs[1]]  # the seed shuffles
    assert [list(va) for _, va in fold_indices(36, 4, 0, groups=groups)] == [list(va) for _, va in runs[0]]
