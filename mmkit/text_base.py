"""The text side's shared pieces: labels -> targets, the linear probe, the encoder interfaces.

A leaf of the text modules: ``mmkit.text`` (the encoders, out-of-fold stacking, the feature table) and
``mmkit.text_hf`` (Hugging Face encoders) both build on it, so neither imports the other at module level.

Example:
    >>> encode_labels(["b", "a", "b"])
    (array([1, 0, 1]), ['a', 'b'], False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch

# A column of a class never seen in a fold's training rows gets this log-probability (~1e-6).
_ABSENT_LOGIT = float(np.log(1e-6))


# ----------------------------------------------------------------------------------------------- labels
def encode_labels(labels: Any, classes: Optional[Sequence] = None) -> tuple[np.ndarray, list, bool]:
    """Labels -> (targets, classes, multilabel).

    ``labels`` may be class names or indices (multiclass: targets int64 [N]), lists of names (multilabel)
    or a multi-hot matrix [N, C] (multilabel: targets float32 [N, C]). With ``classes`` given, integer
    labels are indices into it and names must belong to it.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        n_cols = labels.shape[1]
        classes = list(classes) if classes is not None else list(range(n_cols))
        if len(classes) != n_cols:
            raise ValueError(f"multi-hot labels have {n_cols} columns but {len(classes)} classes were given")
        return labels.astype(np.float32), classes, True
    labels = list(labels)
    if labels and isinstance(labels[0], (list, tuple, set)):
        classes = list(classes) if classes is not None else sorted({c for row in labels for c in row})
        index = {c: i for i, c in enumerate(classes)}
        y = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for i, row in enumerate(labels):
            for c in row:
                if c not in index:
                    raise ValueError(f"row {i}: label {c!r} is not one of the classes {classes}")
                y[i, index[c]] = 1.0
        return y, classes, True
    if classes is None:
        classes = sorted(set(labels), key=lambda c: (str(type(c)), c))
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[c] for c in labels], dtype=np.int64), list(classes), False
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    y = np.empty(len(labels), dtype=np.int64)
    for i, c in enumerate(labels):
        if c in index:
            y[i] = index[c]
        elif isinstance(c, (int, np.integer)) and 0 <= int(c) < len(classes):
            y[i] = int(c)  # an index into ``classes`` (Dataset.targets gives these)
        else:
            raise ValueError(f"row {i}: label {c!r} is neither one of the classes {classes} nor an index")
    return y, classes, False


def _as_texts(texts: Any) -> list[str]:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text row {i} is {type(t).__name__}, not str; convert it (empty text is '')")
    return texts


# ------------------------------------------------------------------------------------------ linear probe
class LinearProbe:
    """Logistic regression on fixed features: softmax (multiclass) or one-vs-rest sigmoid (multilabel).

    ``logits`` returns one column per class of the full class list, even when a class was absent from the
    rows it was fitted on (a cross-validation fold): such a column gets a log-probability of ~1e-6
    (multiclass) or a large negative logit (multilabel).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, seed: int = 0):
        self.C, self.max_iter, self.seed = C, max_iter, seed

    def fit(self, X: Any, y: np.ndarray, num_classes: int) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression

        self.num_classes, self.multilabel = num_classes, y.ndim == 2
        if self.multilabel:
            self.models = []
            for j in range(num_classes):
                col = y[:, j]
                if col.min() == col.max():  # constant label in these rows: nothing to learn
                    self.models.append(float(col[0]))
                else:
                    lr = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
                    self.models.append(lr.fit(X, col.astype(np.int64)))
            return self
        self.present = np.unique(y)
        if len(self.present) == 1:
            self.model = None
        else:
            self.model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
            self.model.fit(X, y)
        return self

    def logits(self, X: Any) -> np.ndarray:
        n = X.shape[0]
        if self.multilabel:
            out = np.empty((n, self.num_classes), dtype=np.float32)
            for j, m in enumerate(self.models):
                out[:, j] = (m - 0.5) * 2 * 20.0 if isinstance(m, float) else m.decision_function(X)
            return out
        out = np.full((n, self.num_classes), _ABSENT_LOGIT, dtype=np.float32)
        if self.model is None:
            out[:, self.present[0]] = 0.0
        else:
            # log-probabilities are logits (softmax(log p) = p) and keep absent classes comparable
            out[:, self.model.classes_] = np.maximum(self.model.predict_log_proba(X), _ABSENT_LOGIT)
        return out


# ---------------------------------------------------------------------------------------------- encoders
class TextEncoder:
    """Shared interface. ``kind`` is "logits" (transform = class logits, label-dependent) or "embedding"
    (transform = a label-free embedding, usable without ``fit``)."""

    name = "text"
    kind = "logits"

    def __init__(self, classes: Optional[Sequence] = None):
        self._given_classes = list(classes) if classes is not None else None
        self.classes_: list = []
        self.multilabel_ = False

    def _targets(self, labels: Any, n: int) -> np.ndarray:
        y, self.classes_, self.multilabel_ = encode_labels(labels, self._given_classes)
        if len(y) != n:
            raise ValueError(f"{n} texts but {len(y)} labels; pass one label per text")
        return y

    def fit(self, texts: Sequence[str], labels: Any) -> TextEncoder:
        raise NotImplementedError

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_logits(texts)

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list:
        """Class names (multiclass) or lists of class names with logit > 0 (multilabel)."""
        logits = self.predict_logits(texts)
        if self.multilabel_:
            return [[c for c, v in zip(self.classes_, row) if v > 0] for row in logits]
        return [self.classes_[i] for i in logits.argmax(1)]

    def _check_fitted(self) -> None:
        if not self.classes_:
            raise RuntimeError(f"{self.name}: call fit(texts, labels) before predicting")


class EmbeddingEncoder(TextEncoder):
    """A frozen text embedder plus a linear probe for ``predict_logits``; ``transform`` gives embeddings."""

    kind = "embedding"

    def __init__(
        self, classes: Optional[Sequence] = None, C: float = 1.0, batch_size: int = 64, seed: int = 0
    ):
        super().__init__(classes)
        self.C, self.batch_size, self.seed = C, batch_size, seed

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(_as_texts(texts))

    def fit(self, texts: Sequence[str], labels: Any) -> EmbeddingEncoder:
        texts = _as_texts(texts)
        return self.fit_embeddings(self.embed(texts), labels)

    def fit_embeddings(self, X: np.ndarray, labels: Any) -> EmbeddingEncoder:
        """Fit only the probe, on embeddings already computed (out-of-fold stacking reuses them)."""
        y = self._targets(labels, len(X))
        self.probe = LinearProbe(C=self.C, seed=self.seed).fit(X, y, len(self.classes_))
        return self

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        return self.probe.logits(self.embed(_as_texts(texts)))


__all__ = ["EmbeddingEncoder", "LinearProbe", "TextEncoder", "encode_labels"]
