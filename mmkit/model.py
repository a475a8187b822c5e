"""The trained multimodal model as an artefact: save it, load it, predict with it.

``save_model(exp, out_dir / "model")`` writes everything a prediction needs into one folder, in safe
formats only (JSON, ``.npz``, torch ``weights_only`` tensors; no pickled objects):

    model.json       what the model is: classes, task, head, the preprocessing (preset, image size,
                     mean/std, feature precision, batch sizes), where the backbone comes from, the mmkit
                     version that wrote it and the list of files
    fusion.pt        the fusion head and its standardisation statistics (``FusionModel``'s state dict)
    backbone.pt      the image backbone's weights (unless saved with backbone="reference": model.json
                     then refers to a stage-1 checkpoint, whose weights hash is checked on load)
    preset.json      the augmentation preset, when it was given as a file (albumentations' to_dict)
    text_encoder/    the fitted text encoder (``mmkit.text_io``: TF-IDF vocabulary + probe, bow-mlp
                     weights, or the minilm / open_clip / hf reference + probe)

``load_model(folder).predict(images, texts)`` returns class probabilities [N, C] (softmax; per-label
sigmoid for multi-label) for image files and texts; either may be None (that modality is missing and
substituted as in training). The image features are computed the way stage 2 computed them (the eval view
of the same preset and size, the same batches, float16 where the head was trained on the feature bank),
so on the CPU a saved model predicts the experiment's test split bit for bit. ``mmkit predict MODEL
--manifest FILE.csv --out preds.csv`` does the same for a CSV / JSONL manifest (``predict_manifest``).

A model written by another mmkit major version, or a folder with a file missing, is refused with an error
that says which. Like AutoGluon's ``TabularPredictor.save`` / ``load``, the folder is the unit: move or
copy it whole.

Example:
    >>> save_model(exp, "runs/04/model")  # doctest: +SKIP
    >>> model = load_model("runs/04/model")  # doctest: +SKIP
    >>> model.predict(["img/1.jpg"], ["a bowl of pho"]).round(2), model.classes  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

MODEL_FORMAT = 1
MANIFEST = "model.json"
PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------------ the model
@dataclass
class MultimodalModel:
    """A fitted image backbone, text encoder and fusion head, with the preprocessing that joins them."""

    backbone: nn.Module  # an mmkit Backbone (a text-only baseline still has one: modalities="text")
    text_encoder: Any  # a fitted mmkit.text encoder
    fusion: nn.Module  # mmkit.heads.FusionModel: statistics + head
    classes: list[str]
    task: str  # multiclass | multilabel
    preprocess: dict[str, Any]  # preset, image_size, norm, feature_dtype, image_batch_size, head_batch_size
    head: str
    text_kind: str = "logits"  # the text features: the encoder's logits, or its embedding
    modalities: str = "both"  # both | image | text (a single-modality baseline)
    backbone_source: dict[str, Any] = field(default_factory=dict)  # how save_model stores the backbone
    info: dict[str, Any] = field(default_factory=dict)  # provenance: dataset, configs, metrics

    def __post_init__(self) -> None:
        if self.backbone is None:  # nothing builds a backbone-less model, and save_model needs one
            raise ValueError(
                "a MultimodalModel needs its image backbone; for a text-only baseline keep it and set "
                "modalities='text'"
            )

    # ---------------------------------------------------------------------------------------- features
    @torch.no_grad()
    def image_features(self, images: list[PathLike]) -> np.ndarray:
        """Backbone features [N, D] of image files: eval view, normalised, batched as in stage 2."""
        from mmkit.augment import make_loader, normalize
        from mmkit.data.records import Dataset, Record

        label: Any = [] if self.task == "multilabel" else self.classes[0]  # unused: the loader wants one
        records = [Record(id=str(i), image_path=Path(p), text="", label=label) for i, p in enumerate(images)]
        ds = Dataset("inputs", list(self.classes), {"test": records}, task=self.task)  # type: ignore[arg-type]
        pre = self.preprocess
        loader = make_loader(
            ds, "test", int(pre["image_batch_size"]), preset=pre["preset"], image_size=int(pre["image_size"]),
            augment=False, shuffle=False,
        )  # fmt: skip
        device = next(self.fusion.buffers()).device
        self.backbone.eval()
        out = np.zeros((len(records), int(self.backbone.num_features)), np.float32)
        for batch in loader:
            feats = self.backbone(normalize(batch["image"], self.backbone.norm, device=device))
            out[batch["index"].numpy()] = feats.float().cpu().numpy()
        if pre.get("feature_dtype") == "float16":  # the bank stores float16: the head was trained on these
            out = out.astype(np.float16).astype(np.float32)
        return out

    def text_features(self, texts: list[str]) -> np.ndarray:
        """The text side's features [N, T]: the encoder's logits or embedding, as in stage 2."""
        texts = list(texts)
        x = (
            self.text_encoder.predict_logits(texts)
            if self.text_kind == "logits"
            else self.text_encoder.transform(texts)
        )
        return np.asarray(x, dtype=np.float32)

    # ------------------------------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict_logits(
        self, images: Optional[list[PathLike]] = None, texts: Optional[list[str]] = None
    ) -> np.ndarray:
        """Logits [N, C]; a modality given as None is missing for every sample (substituted)."""
        if images is None and texts is None:
            raise ValueError("pass images, texts or both")
        n = len(images) if images is not None else len(texts)  # type: ignore[arg-type]
        if images is not None and texts is not None and len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts: pass one of each per sample")
        fusion = self.fusion.eval()
        image_dim, text_dim = fusion.image_mean.numel(), fusion.text_mean.numel()
        use_image = images is not None and self.modalities != "text"
        use_text = texts is not None and self.modalities != "image"
        img = self.image_features(list(images)) if use_image else np.zeros((n, image_dim), np.float32)
        txt = self.text_features(list(texts)) if use_text else np.zeros((n, text_dim), np.float32)
        device = fusion.image_mean.device
        step = int(self.preprocess.get("head_batch_size", 256))
        out = []
        for s in range(0, n, step):
            m = min(step, n - s)
            ip = None if use_image else torch.zeros(m, dtype=torch.bool, device=device)
            tp = None if use_text else torch.zeros(m, dtype=torch.bool, device=device)
            x_img = torch.from_numpy(img[s : s + m]).to(device)
            x_txt = torch.from_numpy(txt[s : s + m]).to(device)
            out.append(fusion(x_img, x_txt, ip, tp).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(
        self, images: Optional[list[PathLike]] = None, texts: Optional[list[str]] = None
    ) -> np.ndarray:
        """Class probabilities [N, C] (multi-label: each label's own probability)."""
        return probabilities(self.predict_logits(images, texts), self.task)

    def save(self, folder: PathLike, backbone: str = "copy") -> Path:
        return save_model(self, folder, backbone=backbone)


def probabilities(logits: Any, task: str) -> np.ndarray:
    """Softmax (multiclass) or per-label sigmoid (multilabel) of logits, float32."""
    x = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return (torch.sigmoid(x) if task == "multilabel" else torch.softmax(x, dim=1)).numpy()


def predicted_labels(logits: Any, classes: list[str], task: str) -> list[str]:
    """The predicted class per row; multi-label: the labels with a positive logit, joined by '|'."""
    x = np.asarray(logits)
    if task == "multilabel":
        return ["|".join(c for c, v in zip(classes, row) if v > 0) for row in x]
    return [classes[i] for i in x.argmax(1)] if len(x) else []


# --------------------------------------------------------------------------------------- from stage 2
def model_from_stage2(
    result: Any,
    text_encoder: Any,
    *,
    augment: Any,
    fusion: Any,
    model: Any,
    text_kind: str,
    bank: Any = None,
    checkpoint: Optional[PathLike] = None,
    backbone: Optional[nn.Module] = None,
    seed: Optional[int] = None,
    info: Optional[dict[str, Any]] = None,
    text_cleaning: Optional[str] = None,
) -> MultimodalModel:
    """A ``MultimodalModel`` from one trained stage-2 run (``train_stage2``'s ``Stage2Result``).

    ``text_encoder``: the encoder fitted on all training rows (``compute_text_features``' second value).
    On the bank path pass ``bank`` and the backbone the bank was built from: ``backbone`` (a module) or
    ``checkpoint`` / ``model.backbone`` + ``model.pretrained`` (+ ``seed`` for a random init, default
    ``augment.seed``), exactly as given to ``build_feature_bank``. On the live path the trained backbone is
    in ``result.model``. ``text_cleaning``: how the dataset's reader cleaned its texts
    (``ds.meta["text_cleaning"]``: "food101_title" or "whitespace"); ``predict_manifest`` cleans its texts
    the same way.
    """
    from mmkit.features import _create_backbone, stage1_backbone, weights_sha256

    s2 = result.model
    source: dict[str, Any] = {"kind": "weights"}
    if s2.backbone is not None:  # live path: the backbone trained with the head
        image_module = s2.backbone
        image_batch, dtype = augment.batch_size, "float32"
    else:
        if bank is None:
            raise ValueError("a bank-path result needs bank= (the feature bank it was trained on)")
        if bank.meta.get("cross_fitted"):  # its val/test predictions average K fold backbones
            raise ValueError(
                f"the feature bank {bank.path} is cross-fitted: its predictions average {bank.meta['cross_fitted']} "
                "fold backbones, which a saved model (one backbone) cannot reproduce; save the model of a "
                "stage1_folds=1 run"
            )
        image_batch, dtype = max(augment.batch_size, bank.views), "float16"  # as the bank was built
        stage1 = stage1_backbone(checkpoint) if backbone is None and checkpoint is not None else None
        if backbone is not None:
            image_module = backbone
        elif stage1 is not None:  # built once: each stage1_backbone call rebuilds it and reloads the file
            from mmkit.features import checkpoint_weights_sha256

            image_module = stage1
            source = {
                "kind": "stage1_checkpoint",
                "path": str(Path(checkpoint).resolve()),
                "weights_sha256": checkpoint_weights_sha256(checkpoint),
            }
        else:
            image_module = _create_backbone(
                model.backbone, model.pretrained, checkpoint, augment.seed if seed is None else seed,
                augment.image_size,
            )  # fmt: skip
        weights = str(bank.key.get("weights", ""))
        if weights.startswith("sha256:") and weights != f"sha256:{weights_sha256(image_module)}":
            raise ValueError(
                "the backbone given is not the one the feature bank was built with (its weights differ); "
                "pass the same backbone / checkpoint / seed as to build_feature_bank"
            )
    from mmkit.models import find_backbone

    image_module = find_backbone(image_module)
    preprocess = {
        "preset": augment.preset,
        "image_size": int(augment.image_size),
        "norm": [list(image_module.norm[0]), list(image_module.norm[1])],
        "feature_dtype": dtype,
        "image_batch_size": int(image_batch),
        "head_batch_size": int(augment.batch_size),
        # fit() trains in channels-last memory format; the convolutions then take other kernels, which
        # round differently: the loaded backbone is put back in the format its features came from
        "channels_last": _is_channels_last(image_module),
        "text_cleaning": text_cleaning,
    }
    head_name = _head_name(s2.fusion.head)
    return MultimodalModel(
        backbone=image_module.eval(),
        text_encoder=text_encoder,
        fusion=s2.fusion,
        classes=[str(c) for c in text_encoder.classes_],
        task="multilabel" if text_encoder.multilabel_ else "multiclass",
        preprocess=preprocess,
        head=head_name,
        text_kind=text_kind,
        modalities=s2.modalities,
        backbone_source=source,
        info={"hidden": int(fusion.hidden), **(info or {})},
    )


def _is_channels_last(module: nn.Module) -> bool:
    for p in module.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def model_from_experiment(exp: Any, head: Optional[str] = None) -> MultimodalModel:
    """The ``MultimodalModel`` of notebook 04's ``FusionExperiment`` (its main head unless ``head``)."""
    settings = exp.settings
    head = head or exp.main
    fusion, model = settings["fusion"], settings["model"]
    return model_from_stage2(
        exp.results[head], exp.text_encoder, augment=settings["augment"], fusion=fusion, model=model,
        text_kind=exp.text.kind, bank=exp.bank, checkpoint=fusion.checkpoint, backbone=exp.image_backbone,
        info={"dataset": getattr(exp.dataset, "name", None), "metrics": exp.results[head].metrics},
        text_cleaning=getattr(exp.dataset, "meta", {}).get("text_cleaning"),
    )  # fmt: skip


def _head_name(head: nn.Module) -> str:
    from mmkit.heads import _HEAD_CLASSES

    for name, cls in _HEAD_CLASSES.items():
        if type(head) is cls:
            return name
    raise ValueError(f"{type(head).__name__} is not one of mmkit's fusion heads: it cannot be saved by name")


# --------------------------------------------------------------------------------------------- save
def save_model(model: Any, folder: PathLike, backbone: str = "copy") -> Path:
    """Write ``model`` (a ``MultimodalModel``, or notebook 04's ``FusionExperiment``) to ``folder``.

    ``backbone``: "copy" (the default: the weights go into the folder, which is then the unit to move or
    copy) or "reference" (only a stage-1 checkpoint's path and weights hash, for the bank path over a
    stage-1 checkpoint: a smaller folder that loads only while that checkpoint stays where it is,
    unchanged). A preset given as a file is stored in the folder (``preset.json``, albumentations'
    serialization) and rebuilt from there on load. Returns ``folder``.

    Example:
        >>> save_model(exp, "runs/04/model")  # doctest: +SKIP
    """
    from mmkit import __version__
    from mmkit.augment import Preset, _is_preset_file, build_preset, save_preset
    from mmkit.features import file_sha256
    from mmkit.text_io import save_text_encoder
    from mmkit.train import _plain, atomic_save

    if not isinstance(model, MultimodalModel):
        model = model_from_experiment(model)
    if backbone not in ("copy", "reference"):
        raise ValueError(f"backbone must be 'copy' or 'reference', got {backbone!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = dict(model.backbone_source)
    if backbone == "reference" and source.get("kind") != "stage1_checkpoint":
        raise ValueError(
            "backbone='reference' needs a model whose image features come from a stage-1 checkpoint"
        )
    if backbone == "copy":
        source = {"kind": "weights", "file": "backbone.pt"}
    preprocess = dict(model.preprocess)
    files = ["fusion.pt", "text_encoder/text_encoder.json", "text_encoder/text_encoder.npz"]
    preset = preprocess["preset"]
    if isinstance(preset, Preset) or isinstance(preset, Path) or _is_preset_file(str(preset)):
        # a preset file may be edited or deleted after training: the folder keeps its own copy
        built = build_preset(preset, int(preprocess["image_size"]))
        save_preset(built, folder / "preset.json")
        files.append("preset.json")
        origin = preprocess.pop("preset_source", None)  # a loaded model's: the file it was trained with
        if origin is None:
            origin = str(preset) if not isinstance(preset, Preset) else (preset.source or preset.name)
        preprocess.update(preset=str(origin), preset_file="preset.json")  # "preset": provenance only
    bb = model.backbone
    backbone_info: dict[str, Any] = {
        "name": getattr(bb, "name", None),
        "num_features": int(bb.num_features),
        "image_size": getattr(bb, "image_size", None),
        "pretrained": getattr(bb, "pretrained", None),
        **source,
    }
    if source["kind"] == "weights":
        if not backbone_info["name"]:
            raise ValueError("save_model needs an mmkit Backbone (create_backbone) to rebuild it by name")
        atomic_save(
            {k: v.detach().cpu().contiguous() for k, v in bb.state_dict().items()}, folder / "backbone.pt"
        )
        files.append("backbone.pt")
    atomic_save({k: v.detach().cpu() for k, v in model.fusion.state_dict().items()}, folder / "fusion.pt")
    save_text_encoder(model.text_encoder, folder / "text_encoder")
    fusion = model.fusion
    manifest = {
        "format": MODEL_FORMAT,
        "mmkit_version": __version__,
        "task": model.task,
        "classes": list(model.classes),
        "head": {
            "name": model.head,
            "image_dim": int(fusion.image_mean.numel()),
            "text_dim": int(fusion.text_mean.numel()),
            "hidden": int(model.info.get("hidden", 256)),
            "missing_fill": fusion.missing_fill,
        },
        "modalities": model.modalities,
        "text": {"kind": model.text_kind, "encoder": getattr(model.text_encoder, "name", None)},
        "preprocess": preprocess,
        "backbone": backbone_info,
        "info": _plain({k: v for k, v in model.info.items() if k != "hidden"}),
        "files": {name: file_sha256(folder / name) for name in files},
    }
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, default=str))  # info's other objects: as text
    os.replace(tmp, folder / MANIFEST)  # written last: a folder with model.json is complete
    return folder


# --------------------------------------------------------------------------------------------- load
def _major(version: str) -> str:
    return str(version).split(".")[0]


def load_model(folder: PathLike, device: Union[str, torch.device] = "cpu") -> MultimodalModel:
    """The model ``save_model`` wrote to ``folder``, on ``device``, ready to ``predict``.

    Example:
        >>> model = load_model("runs/04/model")  # doctest: +SKIP
        >>> model.predict(["a.jpg"], ["apple pie"]).shape  # doctest: +SKIP
        (1, 8)
    """
    from mmkit import __version__
    from mmkit.heads import FusionModel, make_head
    from mmkit.text_io import load_text_encoder

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{folder / MANIFEST} is missing: {folder} is not a model saved by mmkit.save_model"
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    if _major(manifest.get("mmkit_version", "0")) != _major(__version__):
        raise ValueError(
            f"{folder} was saved by mmkit {manifest.get('mmkit_version')}; this is mmkit {__version__} "
            "(another major version, whose models may differ): load it with mmkit "
            f"{_major(manifest.get('mmkit_version', '0'))}.x, or retrain and save it with this one"
        )
    if manifest.get("format") != MODEL_FORMAT:
        raise ValueError(f"{folder}: model format {manifest.get('format')}, this mmkit reads {MODEL_FORMAT}")
    missing = [name for name in manifest["files"] if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is incomplete: {', '.join(missing)} missing (model.json lists {sorted(manifest['files'])}); "
            "copy the whole model folder"
        )
    from mmkit.features import file_sha256

    changed = [name for name, digest in manifest["files"].items() if file_sha256(folder / name) != digest]
    if changed:
        raise ValueError(
            f"{folder}: {', '.join(changed)} changed since the model was saved (model.json keeps each file's "
            "SHA-256); copy the whole model folder again from where it was saved, or save the model again"
        )
    device = torch.device(device)
    classes, task, head = manifest["classes"], manifest["task"], manifest["head"]

    # the image backbone
    info = manifest["backbone"]
    if info["kind"] == "stage1_checkpoint":
        from mmkit.features import checkpoint_weights_sha256, stage1_backbone

        path = Path(info["path"])
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder}: its backbone is the stage-1 checkpoint {path}, which is not there; put it back, or "
                "save the model again with save_model(..., backbone='copy')"
            )
        if checkpoint_weights_sha256(path) != info["weights_sha256"]:
            raise ValueError(
                f"{folder}: the stage-1 checkpoint {path} holds other weights than the model was saved with"
            )
        backbone = stage1_backbone(path)
    else:
        from mmkit.models import create_backbone

        with torch.random.fork_rng(devices=[]):  # the init is overwritten: leave the caller's RNG alone
            backbone = create_backbone(info["name"], pretrained=None, image_size=info.get("image_size"))
        backbone.load_state_dict(torch.load(folder / info["file"], map_location="cpu", weights_only=True))
        backbone.pretrained = info.get("pretrained")
    preprocess = dict(manifest["preprocess"])
    if preprocess.get("preset_file"):  # the preset file as it was at save time, not wherever it is now
        from mmkit.augment import load_preset

        preprocess["preset_source"] = preprocess["preset"]
        preprocess["preset"] = load_preset(folder / preprocess["preset_file"], int(preprocess["image_size"]))
    if manifest["preprocess"].get("channels_last"):
        backbone = backbone.to(memory_format=torch.channels_last)
    mean, std = manifest["preprocess"]["norm"]
    backbone.norm = (tuple(float(m) for m in mean), tuple(float(s) for s in std))

    # the fusion head and its statistics
    with torch.random.fork_rng(devices=[]):
        head_module = make_head(
            head["name"], head["image_dim"], head["text_dim"], len(classes), hidden=head["hidden"]
        )
    zeros = lambda d: (torch.zeros(d), torch.ones(d))  # noqa: E731 - replaced by the saved statistics
    fusion = FusionModel(head_module, zeros(head["image_dim"]), zeros(head["text_dim"]), head["missing_fill"])
    fusion.load_state_dict(torch.load(folder / "fusion.pt", map_location="cpu", weights_only=True))

    encoder = load_text_encoder(folder / "text_encoder", device=str(device))
    return MultimodalModel(
        backbone=backbone.to(device).eval(),
        text_encoder=encoder,
        fusion=fusion.to(device).eval(),
        classes=list(classes),
        task=task,
        preprocess=preprocess,
        head=head["name"],
        text_kind=manifest["text"]["kind"],
        modalities=manifest.get("modalities", "both"),
        backbone_source={k: info[k] for k in ("kind", "path", "weights_sha256") if k in info},
        info=manifest.get("info", {}),
    )


# ---------------------------------------------------------------------------------------- predictions
def write_predictions(
    path: PathLike,
    ids: list[str],
    logits: Any,
    classes: list[str],
    task: str,
    labels: Optional[list[str]] = None,
) -> Path:
    """A predictions CSV: id, (label,) pred, then one probability column per class (``p_<class>``).
    Probabilities are written with 9 significant digits: they read back as the same float32 values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    probs = probabilities(logits, task)
    preds = predicted_labels(logits, classes, task)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *(["label"] if labels is not None else []), "pred", *[f"p_{c}" for c in classes]])
        for i, row in enumerate(probs):
            lead = [ids[i], *([labels[i]] if labels is not None else []), preds[i]]
            w.writerow(lead + [f"{v:.9g}" for v in row.tolist()])
    return path


def dataset_predictions(path: PathLike, dataset: Any, split: str, logits: Any) -> Path:
    """``write_predictions`` for a split of a dataset, with its true labels (notebook 04's test file)."""
    recs = dataset.records(split)
    labels = ["|".join(r.label) if isinstance(r.label, list) else str(r.label) for r in recs]
    return write_predictions(path, [r.id for r in recs], logits, list(dataset.classes), dataset.task, labels)


def read_inputs(
    manifest: PathLike, image_col: str = "image", text_col: str = "text", id_col: str = "id"
) -> tuple[list[str], list[Path], list[str]]:
    """(ids, image paths, texts) of a CSV (header) or JSONL manifest; paths relative to the manifest.
    JSONL's ``img`` is read when there is no ``image``; a row without an id gets its (1-based) row number."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {manifest} not found (mmkit predict --manifest FILE)")
    if manifest.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        lines = [(i, line) for i, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1)]
        rows = []
        for i, line in lines:
            if not line.strip():
                continue
            try:
                rows.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{manifest}, line {i}: malformed JSON ({err.msg}); write one object per line"
                ) from err
    else:
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = [(f"row {i}", r) for i, r in enumerate(csv.DictReader(f), 2)]
    ids, images, texts = [], [], []
    for n, (where, row) in enumerate(rows):
        image = row.get(image_col, row.get("img") if image_col == "image" else None)
        if image in (None, ""):
            raise ValueError(
                f"{manifest}, {where}: no {image_col!r} value; columns are {sorted(row)} "
                "(mmkit predict --image-col NAME)"
            )
        p = Path(str(image))
        p = p if p.is_absolute() else manifest.parent / p
        if not p.is_file():
            raise FileNotFoundError(f"{manifest}, {where}: image {p} not found")
        text = row.get(text_col)
        if text is None:
            raise ValueError(
                f"{manifest}, {where}: no {text_col!r} column; columns are {sorted(row)} (--text-col NAME)"
            )
        row_id = row.get(id_col)
        ids.append(str(n + 1) if row_id is None or row_id == "" else str(row_id))
        images.append(p)
        texts.append(str(text))
    return ids, images, texts


def clean_texts(texts: list[str], cleaning: Optional[str]) -> list[str]:
    """Texts cleaned as the training dataset's reader cleaned its own (``ds.meta["text_cleaning"]``):
    "food101_title" (``clean_title``), "whitespace" (runs collapsed to one space) or None (as given)."""
    if cleaning is None:
        return list(texts)
    if cleaning == "food101_title":
        from mmkit.data.food101 import clean_title

        return [clean_title(t) for t in texts]
    if cleaning == "whitespace":
        return [" ".join(str(t).split()) for t in texts]
    raise ValueError(f"unknown text cleaning {cleaning!r} in the model (food101_title, whitespace or None)")


def predict_manifest(
    model: Union[PathLike, MultimodalModel],
    manifest: PathLike,
    out: PathLike,
    device: str = "cpu",
    **columns: str,
) -> Path:
    """Predict every row of a CSV / JSONL manifest into ``out`` (id, pred, one probability per class).

    Example:
        >>> predict_manifest("runs/04/model", "new.csv", "preds.csv")  # doctest: +SKIP
    """
    if not isinstance(model, MultimodalModel):
        model = load_model(model, device=device)
    ids, images, texts = read_inputs(manifest, **columns)
    texts = clean_texts(texts, model.preprocess.get("text_cleaning"))
    logits = model.predict_logits(images, texts)
    return write_predictions(out, ids, logits, model.classes, model.task)


__all__ = [
    "MultimodalModel",
    "dataset_predictions",
    "load_model",
    "model_from_experiment",
    "model_from_stage2",
    "predict_manifest",
    "predicted_labels",
    "probabilities",
    "read_inputs",
    "save_model",
    "write_predictions",
]
