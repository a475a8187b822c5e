"""Hugging Face transformers text encoder: ``make_text_encoder("hf:<hub name or local folder>", ...)``.

Two modes, one class name (``HFTextEncoder(name_or_path, mode=...)`` builds the matching subclass):

    mode="features"    frozen model (``eval()`` + ``torch.inference_mode``): ``transform`` gives pooled,
                       L2-normalised embeddings (``kind = "embedding"``); ``predict_logits`` is a linear probe
                       on them, so out-of-fold stacking embeds every text once and refits only the probe.
    mode="classifier"  the seed's GPT-2 classifier: the whole model plus a linear head on the pooled vector,
                       fine-tuned with AdamW (warmup + linear decay), seeded; ``transform`` = ``predict_logits``
                       (``kind = "logits"``, as for the other classifiers: the logits are the text features, so
                       training rows must get out-of-fold values; ``mmkit.text`` does that).

Pooling turns the per-token hidden states into one vector, counting real tokens only (never padding):
``"last"`` (the last real token: what a causal model has read the whole text at; GPT-2's classifier uses it),
``"mean"`` (over real tokens), ``"cls"`` (the first token: BERT's [CLS]). ``"auto"`` takes "last" for
decoder-only models and "mean" for encoders (a frozen BERT's [CLS] is a weak sentence vector until fine-tuned;
the mean works in both modes). Batches are padded on the right whatever the tokenizer's default: a causal
model then never sees the padding, and positions start at 0 for every text (GPT-2 does not shift positions
for left padding), so a text's embedding does not depend on the batch it shares.

GPT-2 has no pad token: its end-of-text token pads (padding is masked out, so which id does not matter).
Encoder-decoder models (T5) contribute their encoder. Nothing here downloads on its own terms: the name goes
to ``from_pretrained`` as given (a local folder, or a hub name that is cached or fetched as the Hugging Face
settings allow; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` keep it offline).

Example:
    >>> enc = HFTextEncoder("gpt2", pooling="last", max_length=64)  # doctest: +SKIP
    >>> enc.transform(["grilled salmon", "apple pie"]).shape  # doctest: +SKIP
    (2, 768)
    >>> clf = HFTextEncoder("bert-base-uncased", mode="classifier", epochs=3).fit(texts, labels)  # doctest: +SKIP
    >>> clf.predict_logits(["apple pie"]).shape  # doctest: +SKIP
    (1, len(clf.classes_))
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mmkit.text_base import EmbeddingEncoder, TextEncoder, _as_texts

MODES = ("features", "classifier")
POOLINGS = ("auto", "cls", "mean", "last")

# One loaded (tokenizer, frozen model) per (name, device, options): cross-validation folds and the features
# and classifier encoders of one run share it; a classifier fine-tunes a deep copy, never the cached model.
_CACHE: dict[tuple, tuple[Any, nn.Module]] = {}


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def is_decoder_only(config: Any) -> bool:
    """True for causal language models (GPT-2, Llama, ...): their last real token has read the whole text.

    BERT-like models also have a causal-LM head class, so a model counts as decoder-only only when it has no
    masked-LM class and is not an encoder-decoder, or when its config says ``is_decoder``.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False):
        return True
    kind = getattr(config, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """[B, L, D] hidden states + [B, L] attention mask (1 = real token) -> [B, D].

    "last" finds the last real token from the mask itself, so it is right for either padding side.

    Example:
        >>> h = torch.arange(6.0).view(1, 3, 2); m = torch.tensor([[1, 1, 0]])
        >>> pool(h, m, "last").tolist(), pool(h, m, "mean").tolist(), pool(h, m, "cls").tolist()
        ([[2.0, 3.0]], [[1.0, 2.0]], [[0.0, 1.0]])
    """
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * (mask > 0)).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling must be one of {POOLINGS[1:]}, got {how!r}")


def load_pretrained(
    name_or_path: str,
    device: torch.device,
    revision: Optional[str] = None,
    local_files_only: bool = False,
) -> tuple[Any, nn.Module]:
    """(tokenizer with a pad token, frozen text model in eval mode on ``device``), cached.

    The model is ``AutoModel`` (no task head); for an encoder-decoder only its encoder is kept.
    """
    key = (name_or_path, str(device), revision, local_files_only)
    if key in _CACHE:
        return _CACHE[key]
    from transformers import AutoModel, AutoTokenizer

    kw = {"revision": revision, "local_files_only": local_files_only}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kw)
        model = AutoModel.from_pretrained(name_or_path, **kw)
    except OSError as err:
        raise OSError(
            f"hf:{name_or_path}: could not load a tokenizer and model. Pass a local folder holding both "
            "(save_pretrained) or a hub name; without network (HF_HUB_OFFLINE=1, local_files_only=True) a hub "
            "name must already be in the Hugging Face cache: download it once where there is network."
        ) from err
    if tokenizer.pad_token is None:
        # GPT-2 and most causal models ship without a pad token; any id will do since padding is masked.
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is None:
            raise ValueError(
                f"hf:{name_or_path}: the tokenizer has no pad, eos, unk or bos token to pad with; "
                "set tokenizer.pad_token in the saved folder"
            )
        tokenizer.pad_token = fallback
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    model.requires_grad_(False)
    model.eval().to(device)
    _CACHE[key] = (tokenizer, model)
    return tokenizer, model


class HFTextEncoder(TextEncoder):
    """A Hugging Face model by hub name or local folder; ``mode`` picks features (frozen + probe) or
    classifier (fine-tuned with a linear head). See the module docstring.

    Options: ``pooling`` ("auto" | "cls" | "mean" | "last"), ``max_length`` (tokens; longer texts are
    truncated), ``batch_size``, ``device`` ("auto" = cuda when available), ``amp`` (bfloat16 autocast on cuda),
    ``seed``, ``progress`` (tqdm bars). Features mode: ``normalize`` (L2), ``C`` (probe). Classifier mode:
    ``epochs``, ``lr``, ``weight_decay``, ``warmup`` (fraction of steps), ``grad_clip``, ``dropout``.

    Example:
        >>> enc = HFTextEncoder("path/to/tiny-gpt2", mode="classifier", epochs=2)  # doctest: +SKIP
        >>> enc.fit(["red apple", "green pear"], ["apple", "pear"]).classes_  # doctest: +SKIP
        ['apple', 'pear']
    """

    name = "hf"

    def __new__(cls, *args: Any, **kwargs: Any) -> HFTextEncoder:
        # HFTextEncoder(..., mode=m) builds the mode's subclass (so out-of-fold stacking can tell a frozen
        # embedder from a classifier by its type); subclasses, copy and pickle go straight through.
        if cls is HFTextEncoder:
            mode = kwargs.get("mode") or "features"
            if mode not in MODES:
                raise ValueError(f"hf: mode must be one of {MODES}, got {mode!r}")
            cls = HFClassifier if mode == "classifier" else HFEmbedder
        return super().__new__(cls)

    def __init__(
        self,
        name_or_path: str,
        classes: Optional[Sequence] = None,
        *,
        mode: Optional[str] = None,
        pooling: str = "auto",
        max_length: int = 128,
        batch_size: int = 32,
        device: str = "auto",
        amp: bool = True,
        seed: int = 0,
        progress: bool = True,
        revision: Optional[str] = None,
        local_files_only: bool = False,
    ):
        TextEncoder.__init__(self, classes)
        own = "classifier" if isinstance(self, HFClassifier) else "features"
        if mode not in (None, own):
            raise ValueError(f"hf: {type(self).__name__} is mode={own!r}, got mode={mode!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"hf: pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"hf: max_length and batch_size must be >= 1, got {max_length}, {batch_size}")
        self.name_or_path, self.mode, self.pooling_option = str(name_or_path), own, pooling
        self.max_length, self.batch_size, self.amp = max_length, batch_size, amp
        self.device, self.seed, self.progress = resolve_device(device), seed, progress
        self.revision, self.local_files_only = revision, local_files_only
        self.name = f"hf:{self.name_or_path}"
        self._base: Optional[tuple[Any, nn.Module]] = None

    # ------------------------------------------------------------------------------------- model pieces
    @property
    def tokenizer(self) -> Any:
        return self._load()[0]

    @property
    def base_model(self) -> nn.Module:
        """The pretrained model as loaded (frozen, shared through the cache)."""
        return self._load()[1]

    def _load(self) -> tuple[Any, nn.Module]:
        if self._base is None:
            self._base = load_pretrained(self.name_or_path, self.device, self.revision, self.local_files_only)
            config = self._base[1].config
            self.decoder_only = is_decoder_only(config)
            self.pooling = self.pooling_option
            if self.pooling == "auto":
                self.pooling = "last" if self.decoder_only else "mean"
            if self.pooling == "cls" and self.decoder_only:
                raise ValueError(
                    f"{self.name}: pooling='cls' on a decoder-only model is the first token, which has read "
                    "nothing else; use pooling='last' or 'mean'"
                )
            self.hidden_size = int(config.get_text_config().hidden_size)
            limits = [self.max_length, getattr(config, "max_position_embeddings", None)]
            limits.append(getattr(self._base[0], "model_max_length", None))
            self.max_tokens = min(int(x) for x in limits if isinstance(x, int) and x > 0)
        return self._base

    def _autocast(self):
        if self.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()  # cpu/mps: full precision (cpu autocast is slower than fp32 here)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Right-padded, truncated ids and mask on the device; an empty text gets one token (the tokenizer's
        bos/eos/cls/unk) so that no row is all padding."""
        tokenizer = self.tokenizer
        enc = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            padding_side="right",
            return_tensors="pt",
            return_token_type_ids=False,
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        empty = mask.sum(1) == 0
        if empty.any():
            if ids.shape[1] == 0:
                # token ids are integers; the dtypes are not taken from the tokenizer's output, which
                # transformers 4.45 (the floor) gives as a float [N, 0] tensor for a batch of empty texts
                ids = torch.full((len(texts), 1), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(texts), 1), dtype=torch.long)
            candidates = ("bos_token_id", "eos_token_id", "cls_token_id", "unk_token_id", "pad_token_id")
            filler = next(t for t in (getattr(tokenizer, c) for c in candidates) if t is not None)
            empty = mask.sum(1) == 0
            ids[empty, 0], mask[empty, 0] = filler, 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _pooled(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.pooling)

    def _batches(self, texts: list[str], desc: str):
        """(positions, tokenized batch) over ``texts`` sorted by length (less padding), with a progress bar."""
        from mmkit.progress import progress

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(texts), self.batch_size)
        for s in progress(starts, desc=desc, disable=not self.progress, leave=False):
            idx = order[s : s + self.batch_size]
            yield idx, self._tokenize([texts[i] for i in idx])

    def _run(self, model: nn.Module, texts: list[str], head: Optional[nn.Module], desc: str) -> np.ndarray:
        """Pooled vectors (head None) or head outputs for ``texts``, in their order, without gradients."""
        self._load()
        width = self.hidden_size if head is None else head.out_features
        out = np.zeros((len(texts), width), dtype=np.float32)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), self._autocast():
                for idx, batch in self._batches(texts, desc):
                    v = self._pooled(model, batch)
                    if head is not None:
                        v = head(v)
                    out[idx] = v.float().cpu().numpy()
        finally:
            model.train(was_training)
        return out


class HFEmbedder(HFTextEncoder, EmbeddingEncoder):
    """``mode="features"``: frozen pooled embeddings; ``predict_logits`` from a linear probe on them."""

    kind = "embedding"

    def __init__(
        self,
        name_or_path: str,
        classes: Optional[Sequence] = None,
        *,
        normalize: bool = True,
        C: float = 1.0,
        **kw: Any,
    ):
        HFTextEncoder.__init__(self, name_or_path, classes, **kw)
        self.normalize, self.C = normalize, C

    def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled embeddings [N, hidden_size] (L2-normalised with ``normalize``)."""
        x = self._run(self.base_model, _as_texts(texts), None, f"{self.name} embed")
        if self.normalize:
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x


class HFClassifier(HFTextEncoder):
    """``mode="classifier"``: the whole model fine-tuned with a linear head on the pooled vector.

    Softmax + cross-entropy for multiclass labels, sigmoid + binary cross-entropy for multilabel ones
    (lists of class names or a multi-hot matrix). Seeded: head init, dropout and shuffling repeat exactly
    for one seed on one device.
    """

    kind = "logits"

    def __init__(
        self,
        name_or_path: str,
        classes: Optional[Sequence] = None,
        *,
        epochs: int = 3,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup: float = 0.1,
        grad_clip: Optional[float] = 1.0,
        dropout: float = 0.1,
        **kw: Any,
    ):
        HFTextEncoder.__init__(self, name_or_path, classes, **kw)
        self.epochs, self.lr, self.weight_decay, self.warmup = epochs, lr, weight_decay, warmup
        self.grad_clip, self.dropout = grad_clip, dropout
        self.model: Optional[nn.Module] = None
        self.head: Optional[nn.Linear] = None

    def _param_groups(self) -> list[dict[str, Any]]:
        # Standard transformer fine-tuning: no weight decay on biases and normalisation weights.
        decay, no_decay = [], []
        for module in (self.model, self.head):
            for name, p in module.named_parameters():
                (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        return [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def fit(self, texts: Sequence[str], labels: Any) -> HFClassifier:
        from mmkit.progress import progress

        texts = _as_texts(texts)
        y = torch.as_tensor(self._targets(labels, len(texts)))
        self._load()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # fork_rng: seed head init and dropout without touching the caller's global torch RNG state
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            self.model = copy.deepcopy(self.base_model).requires_grad_(True)
            self.head = nn.Linear(self.hidden_size, len(self.classes_)).to(self.device)
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
            drop = nn.Dropout(self.dropout)
            opt = torch.optim.AdamW(self._param_groups(), lr=self.lr)
            steps_per_epoch = math.ceil(len(texts) / self.batch_size)
            total = max(1, self.epochs * steps_per_epoch)
            warm = int(self.warmup * total)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt,
                lambda s: (s + 1) / (warm + 1) if s < warm else max(0.0, (total - s) / max(1, total - warm)),
            )
            loss_fn = nn.BCEWithLogitsLoss() if self.multilabel_ else nn.CrossEntropyLoss()
            gen = torch.Generator().manual_seed(self.seed)
            self.model.train()
            bar = progress(total=total, desc=f"{self.name} fine-tune", disable=not self.progress, leave=False)
            for _ in range(self.epochs):
                order = torch.randperm(len(texts), generator=gen).tolist()
                for s in range(0, len(texts), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    batch = self._tokenize([texts[i] for i in idx])
                    with self._autocast():
                        logits = self.head(drop(self._pooled(self.model, batch)))
                    loss = loss_fn(logits.float(), y[idx].to(self.device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip:
                        nn.utils.clip_grad_norm_(
                            [p for g in opt.param_groups for p in g["params"]], self.grad_clip
                        )
                    opt.step()
                    sched.step()
                    bar.update()
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.close()
        self.model.eval().requires_grad_(False)
        self.head.eval().requires_grad_(False)
        return self

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """[N, len(classes_)] logits (softmax or sigmoid scores after the matching activation)."""
        self._check_fitted()
        return self._run(self.model, _as_texts(texts), self.head, f"{self.name} predict")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled vectors of the fine-tuned model (of the pretrained one before ``fit``)."""
        model = self.model if self.model is not None else self.base_model
        return self._run(model, _as_texts(texts), None, f"{self.name} embed")


__all__ = ["HFClassifier", "HFEmbedder", "HFTextEncoder", "is_decoder_only", "load_pretrained", "pool"]
