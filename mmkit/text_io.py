"""Save and load a *fitted* text encoder in safe formats: JSON for settings and vocabularies' order,
``.npz`` (``allow_pickle=False``) for arrays. No pickle, so loading a saved model runs no foreign code.

What each encoder writes into its folder (``text_encoder.json`` + ``text_encoder.npz``):

    tfidf              both vectorizers' settings, their vocabularies (terms in column order) and idf
                       weights, and the logistic-regression probe's coefficients
    bow-mlp            the vocabulary (terms in id order), the network's settings and weights
    minilm             the sentence-transformers folder it reads (a reference) and the probe
    open_clip:<model>  the model name and pretrained tag or file (a reference) and the probe
    hf:<name> (features mode)  the model name or folder, pooling and length (a reference) and the probe

An embedder's reference is only a name: the same pretrained weights must be there when the model is loaded
(they are not copied). ``hf:`` in classifier mode fine-tunes the whole language model; saving that is not
supported here (an error says so): use ``text_options={"mode": "features"}`` or another encoder.

Example:
    >>> from mmkit.text import make_text_encoder
    >>> enc = make_text_encoder("tfidf").fit(["red apple", "green pear"], ["apple", "pear"])
    >>> import tempfile; folder = tempfile.mkdtemp()
    >>> _ = save_text_encoder(enc, folder)
    >>> again = load_text_encoder(folder)
    >>> bool((again.predict_logits(["apple pie"]) == enc.predict_logits(["apple pie"])).all())
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

TEXT_FORMAT = 1
HEADER, ARRAYS = "text_encoder.json", "text_encoder.npz"


# --------------------------------------------------------------------------------------------- the probe
def _lr_state(lr: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    arrays[f"{prefix}coef"] = np.asarray(lr.coef_)
    arrays[f"{prefix}intercept"] = np.asarray(lr.intercept_)
    arrays[f"{prefix}classes"] = np.asarray(lr.classes_)
    return {"C": lr.C, "max_iter": lr.max_iter, "random_state": lr.random_state}


def _lr_from_state(params: dict[str, Any], prefix: str, arrays: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(**params)
    lr.coef_ = np.asarray(arrays[f"{prefix}coef"])
    lr.intercept_ = np.asarray(arrays[f"{prefix}intercept"])
    lr.classes_ = np.asarray(arrays[f"{prefix}classes"])
    lr.n_features_in_ = lr.coef_.shape[1]
    return lr


def probe_state(probe: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A fitted ``LinearProbe`` as JSON settings plus arrays (added to ``arrays``)."""
    state: dict[str, Any] = {
        "C": probe.C,
        "max_iter": probe.max_iter,
        "seed": probe.seed,
        "num_classes": probe.num_classes,
        "multilabel": probe.multilabel,
    }
    if probe.multilabel:
        state["models"] = [
            {"constant": m} if isinstance(m, float) else {"lr": _lr_state(m, f"probe__{j}__", arrays)}
            for j, m in enumerate(probe.models)
        ]
    else:
        state["present"] = [int(c) for c in probe.present]
        state["lr"] = None if probe.model is None else _lr_state(probe.model, "probe__", arrays)
    return state


def probe_from_state(state: dict[str, Any], arrays: Any) -> Any:
    from mmkit.text import LinearProbe

    probe = LinearProbe(C=state["C"], max_iter=state["max_iter"], seed=state["seed"])
    probe.num_classes, probe.multilabel = state["num_classes"], state["multilabel"]
    if probe.multilabel:
        probe.models = [
            float(m["constant"]) if "constant" in m else _lr_from_state(m["lr"], f"probe__{j}__", arrays)
            for j, m in enumerate(state["models"])
        ]
    else:
        probe.present = np.asarray(state["present"], dtype=np.int64)
        probe.model = None if state["lr"] is None else _lr_from_state(state["lr"], "probe__", arrays)
    return probe


# ------------------------------------------------------------------------------------------- vocabularies
def _terms(vocabulary: dict[str, int], offset: int = 0) -> np.ndarray:
    """A term -> column dict as the terms in column order (the columns run offset, offset + 1, ...)."""
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    if [vocabulary[t] for t in terms] != list(range(offset, offset + len(terms))):
        raise ValueError("vocabulary columns are not contiguous: cannot store them in order")
    return np.array(terms, dtype=np.str_)


def _vocabulary(terms: np.ndarray, offset: int = 0) -> dict[str, int]:
    return {str(t): i + offset for i, t in enumerate(terms.tolist())}


def _jsonable_params(vectorizer: Any) -> dict[str, Any]:
    params = {}
    for k, v in vectorizer.get_params().items():
        if k == "dtype":
            continue  # the numpy float64 class: the default, restored by the constructor
        if callable(v):
            raise ValueError(f"a TF-IDF vectorizer with a custom {k} cannot be saved as data")
        params[k] = list(v) if isinstance(v, tuple) else v
    return params


# --------------------------------------------------------------------------------------------- encoders
def _encoder_state(enc: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    from mmkit.text import (
        BowMLPEncoder,
        EmbeddingEncoder,
        MiniLMEncoder,
        OpenClipTextEncoder,
        TfidfEncoder,
    )

    if isinstance(enc, TfidfEncoder):
        parts = []
        for name, vec in enc.vectorizer.transformer_list:
            arrays[f"vocab__{name}"] = _terms(vec.vocabulary_)
            arrays[f"idf__{name}"] = np.asarray(vec.idf_)
            parts.append({"name": name, "params": _jsonable_params(vec)})
        return {
            "settings": {
                "C": enc.C,
                "word_ngrams": list(enc.word_ngrams),
                "char_ngrams": list(enc.char_ngrams),
                "max_features": enc.max_features,
                "seed": enc.seed,
            },
            "vectorizers": parts,
            "probe": probe_state(enc.probe, arrays),
        }
    if isinstance(enc, BowMLPEncoder):
        arrays["vocab__bow"] = _terms(enc.vocab, offset=2)
        for k, v in enc.model.state_dict().items():
            arrays[f"weights__{k}"] = v.detach().cpu().numpy()
        names = ("epochs", "lr", "batch_size", "weight_decay", "embed_dim", "hidden", "max_len", "max_vocab")
        return {"settings": {**{k: getattr(enc, k) for k in names}, "seed": enc.seed}}
    if isinstance(enc, EmbeddingEncoder):
        common = {"C": enc.C, "batch_size": enc.batch_size, "seed": enc.seed}
        if isinstance(enc, MiniLMEncoder):
            reference = {"path": enc.path}
        elif isinstance(enc, OpenClipTextEncoder):
            reference = {"model_name": enc.model_name, "pretrained": enc.pretrained}
        elif type(enc).__name__ == "HFEmbedder":
            reference = {
                "name_or_path": enc.name_or_path,
                "mode": "features",
                "pooling": enc.pooling_option,
                "max_length": enc.max_length,
                "revision": enc.revision,
                "local_files_only": enc.local_files_only,
                "amp": enc.amp,
                "normalize": enc.normalize,
            }
        else:
            raise ValueError(f"cannot save the text encoder {type(enc).__name__}: no reference form for it")
        return {"settings": common, "reference": reference, "probe": probe_state(enc.probe, arrays)}
    raise ValueError(
        f"cannot save the text encoder {getattr(enc, 'name', type(enc).__name__)!r} "
        f"({type(enc).__name__}): a fine-tuned hf classifier is not saved by mmkit; use "
        "text_options={'mode': 'features'} (a frozen hf embedder) or tfidf / bow-mlp / minilm / open_clip"
    )


def save_text_encoder(encoder: Any, folder: Union[str, Path]) -> Path:
    """Write the fitted ``encoder`` to ``folder`` (``text_encoder.json`` + ``text_encoder.npz``)."""
    encoder._check_fitted()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    state = _encoder_state(encoder, arrays)
    header = {
        "format": TEXT_FORMAT,
        "type": type(encoder).__name__,
        "name": encoder.name,
        "kind": encoder.kind,
        "classes": list(encoder.classes_),
        "multilabel": bool(encoder.multilabel_),
        **state,
    }
    (folder / HEADER).write_text(json.dumps(header, indent=1))
    np.savez(folder / ARRAYS, **arrays)
    return folder


def load_text_encoder(folder: Union[str, Path], device: str = "cpu") -> Any:
    """The encoder ``save_text_encoder`` wrote to ``folder``, fitted, on ``device``."""
    from mmkit import text

    folder = Path(folder)
    for name in (HEADER, ARRAYS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: {folder} is not a saved mmkit text encoder")
    header = json.loads((folder / HEADER).read_text())
    if header.get("format") != TEXT_FORMAT:
        raise ValueError(
            f"{folder}: text encoder format {header.get('format')}, this mmkit reads {TEXT_FORMAT}"
        )
    kind, settings = header["type"], header.get("settings", {})
    with np.load(folder / ARRAYS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if kind == "TfidfEncoder":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        enc: Any = text.TfidfEncoder(classes=header["classes"], **settings)
        parts = []
        for part in header["vectorizers"]:
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in part["params"].items()}
            vec = TfidfVectorizer(**params)
            vec.vocabulary_ = _vocabulary(arrays[f"vocab__{part['name']}"])
            vec.idf_ = arrays[f"idf__{part['name']}"]
            parts.append((part["name"], vec))
        enc.vectorizer = FeatureUnion(parts)
        enc.probe = probe_from_state(header["probe"], arrays)
    elif kind == "BowMLPEncoder":
        enc = text.BowMLPEncoder(classes=header["classes"], device=device, **settings)
        enc.vocab = _vocabulary(arrays["vocab__bow"], offset=2)
        with torch.random.fork_rng(devices=[]):  # the init is overwritten: leave the caller's RNG alone
            enc.model = text.BowMLP(len(enc.vocab) + 2, len(header["classes"]), enc.embed_dim, enc.hidden)
        enc.model.load_state_dict(
            {
                k[len("weights__") :]: torch.from_numpy(v)
                for k, v in arrays.items()
                if k.startswith("weights__")
            }
        )
        enc.model.to(device).eval()
    elif kind in ("MiniLMEncoder", "OpenClipTextEncoder", "HFEmbedder"):
        ref = header["reference"]
        if kind == "MiniLMEncoder":
            if not Path(ref["path"]).is_dir():
                raise FileNotFoundError(
                    f"{folder}: the minilm model folder {ref['path']} it refers to is not here; install the "
                    "same sentence-transformers model there (the saved model holds only its probe)"
                )
            enc = text.MiniLMEncoder(classes=header["classes"], path=ref["path"], device=device, **settings)
        elif kind == "OpenClipTextEncoder":
            enc = text.OpenClipTextEncoder(
                ref["model_name"], classes=header["classes"], pretrained=ref["pretrained"], device=device,
                **settings,
            )  # fmt: skip
        else:
            from mmkit.text_hf import HFTextEncoder

            enc = HFTextEncoder(
                ref.pop("name_or_path"), classes=header["classes"], device=device, progress=False, **ref,
                **settings,
            )  # fmt: skip
        enc.probe = probe_from_state(header["probe"], arrays)
    else:
        raise ValueError(f"{folder}: unknown text encoder type {kind!r}")
    enc.classes_, enc.multilabel_ = list(header["classes"]), bool(header["multilabel"])
    return enc


__all__ = ["load_text_encoder", "probe_from_state", "probe_state", "save_text_encoder"]
