"""The feature bank: image features of a frozen backbone computed once, K augmented views per training image.

The seed's stage 2 ran the "frozen" backbone in train mode with gradients on every step, which made the
head-only stage as slow as fine-tuning the whole network (and let BatchNorm statistics drift). Frozen here
means ``eval()`` + ``inference_mode``, and the features are computed once: every training image gets
``views`` (K) augmented views through ``make_loader`` (the same seeded views the stage-1 loader would
draw), every val/test image its plain eval view, and training images also their plain view. Stage 2 then
keeps batch augmentation by drawing M of the K cached views of each sample at every step (``BankLoader``).
With ``bank_views="epochs"`` (``resolve_bank_views``) the bank holds K = stage-2 epochs x M views and each
is used exactly once: epoch e reads views e*M .. e*M+M-1 of every sample, so every batch gets augmentations
it has never seen, the live path's "fresh augmentation for every batch", computed once and shared by every
head. An integer K < epochs x M is an approximation of that: views are reused across epochs.

The bank lives on disk as float16 ``.npy`` files under ``cache_dir/<key hash>/``. The key holds the
backbone name, its weights (a hash of the weights themselves, for a stage-1 checkpoint, a module or a random
init; a pretrained file's SHA-256 or the pretrained tag), the normalisation a stage-1 checkpoint records,
the augmentation preset, K, the image size, the seed, the mmkit and albumentations versions, and a
fingerprint of the dataset's splits: ids, image files and each file's size and mtime_ns, so an image
overwritten in place builds a new bank. The same key reuses the bank; any change builds a new one. A bank
is written to a temporary folder ``<hash>.tmp-<host>-<pid>`` and renamed into place, so an interrupted
build never leaves a half bank that a later run would reuse; the folders a killed build left behind are
removed by the next build in that cache (those of processes no longer alive on this host).

Where banks live (``default_bank_dir``): ``$MMKIT_CACHE/feature_bank`` when the ``MMKIT_CACHE``
environment variable is set (one cache shared by every run), else ``<out_dir>/feature_bank``.

Example:
    >>> bank = build_feature_bank(ds, "timm:test_resnet", views=4, image_size=64, cache_dir="runs/bank")  # doctest: +SKIP
    >>> bank.features["train"].shape, bank.reused  # doctest: +SKIP
    ((N, 4, D), False)
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from mmkit.heads import modality_dropout_masks
from mmkit.progress import progress
from mmkit.seeding import derive_seed, torch_generator

BANK_VERSION = 2  # bump when the bank's layout or the way features are computed changes
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------ keys
def file_sha256(path: Union[str, Path], chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict (names, shapes, dtypes and values, in key order)."""
    h = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, dtypes and values, in key order)."""
    return state_sha256(module.state_dict())


def checkpoint_weights_sha256(checkpoint: Union[str, Path]) -> str:
    """SHA-256 of the backbone weights a checkpoint holds, not of the file's bytes: the same weights saved
    twice (another archive name inside the file, another epoch or history beside them) name one bank.
    A classifier's ``backbone.*`` weights are hashed without its head."""
    from mmkit.models import read_state_dict

    state = read_state_dict(checkpoint)
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return state_sha256(backbone or state)


def _stat(path: Any) -> str:
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def dataset_fingerprint(dataset: Any) -> str:
    """Hash of each split's record ids, image files and the files' size and mtime_ns: a bank is never
    reused on other images, nor on an image overwritten in place."""
    h = hashlib.sha256()
    for split in SPLITS:
        for r in dataset.records(split) if split in dataset.splits else []:
            h.update(f"{split}\t{r.id}\t{r.image_path}\t{_stat(r.image_path)}\n".encode())
    return h.hexdigest()[:16]


def _versions() -> dict[str, str]:
    import albumentations

    from mmkit import __version__

    return {"mmkit": __version__, "albumentations": albumentations.__version__}


def bank_key(
    backbone: str,
    weights: str,
    preset: str,
    views: int,
    image_size: int,
    seed: int,
    data: str,
    norm: Any = None,
) -> dict[str, Any]:
    """The settings a bank depends on; its folder name is a hash of this dict."""
    return {
        "version": BANK_VERSION,
        "backbone": backbone,
        "weights": weights,
        "norm": [list(map(float, norm[0])), list(map(float, norm[1]))] if norm is not None else None,
        "preset": preset,
        "views": int(views),
        "image_size": int(image_size),
        "seed": int(seed),
        "data": data,
        **_versions(),
    }


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- views
def resolve_bank_views(bank_views: Union[int, str], stage2_epochs: int, copies: int) -> int:
    """K, the views per training image a bank holds: ``"epochs"`` is stage-2 epochs x M (each view used
    exactly once, ``BankLoader(each_once=True)``), an integer is itself (M of K drawn at every step).

    Example:
        >>> resolve_bank_views("epochs", 20, 4), resolve_bank_views(8, 20, 4)
        (80, 8)
    """
    if isinstance(bank_views, str):
        if bank_views != "epochs":
            raise ValueError(
                f"bank_views={bank_views!r}: give an integer K (views cached per training image) or "
                '"epochs" (K = stage-2 epochs x copies, every view used once)'
            )
        if stage2_epochs < 1 or copies < 1:
            raise ValueError(
                f'bank_views="epochs" needs stage-2 epochs >= 1 and copies >= 1, got {stage2_epochs} and {copies}'
            )
        return int(stage2_epochs) * int(copies)
    if isinstance(bank_views, bool) or int(bank_views) != bank_views or bank_views < 1:
        raise ValueError(f'bank_views={bank_views!r}: an integer >= 1, or "epochs"')
    return int(bank_views)


def describe_bank_views(bank_views: Union[int, str], stage2_epochs: int, copies: int) -> str:
    """How the bank a ``bank_views`` setting builds serves ``stage2_epochs`` epochs of M = ``copies`` views
    per sample: the words tables and notebooks print beside a row's score ("approximation" whenever views
    are reused across epochs).

    Example:
        >>> describe_bank_views("epochs", 20, 4)
        'K=80 = 20 epochs x M=4, every view used once (as the live path, computed once)'
        >>> describe_bank_views(8, 20, 4)
        'K=8, M=4 of them drawn every step for 20 epochs: an approximation (views reused across epochs)'
    """
    k = resolve_bank_views(bank_views, stage2_epochs, copies)
    if bank_views == "epochs":
        return f"K={k} = {stage2_epochs} epochs x M={copies}, every view used once (as the live path, computed once)"
    return (
        f"K={k}, M={copies} of them drawn every step for {stage2_epochs} epochs: an approximation "
        "(views reused across epochs)"
    )


def bank_bytes(n_train: int, n_eval: int, views: int, width: int, itemsize: int = 2) -> int:
    """Bytes of a bank on disk: ``views`` + 1 plain view per training image, one plain view per val/test
    image, ``width`` features each (float16: 2 bytes).

    Example:
        >>> bank_bytes(1000, 200, 80, 2048) / 2**30  # doctest: +ELLIPSIS
        0.30...
    """
    return int((n_train * (views + 1) + n_eval) * width * itemsize)


# -------------------------------------------------------------------------------------------- backbones
def load_backbone(
    backbone: Union[str, nn.Module],
    pretrained: Optional[str] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    seed: int = 0,
    image_size: Optional[int] = None,
) -> tuple[nn.Module, str, str]:
    """(module, backbone name, weights id). A random init is made under ``seed`` so that it, and its
    bank, are reproducible; a stage-1 checkpoint replaces ``pretrained`` (``create_backbone`` reads it).
    ``image_size`` matters to backbones that fix their input size (ViTs)."""
    if isinstance(backbone, nn.Module):
        if checkpoint is not None:
            load_backbone_weights(backbone, checkpoint)
        return backbone, type(backbone).__name__, f"sha256:{weights_sha256(backbone)}"
    module = _create_backbone(backbone, pretrained, checkpoint, seed, image_size)
    return module, backbone, weights_id(pretrained, checkpoint, module)


def backbone_module(
    backbone: Union[str, nn.Module],
    pretrained: Optional[str] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    seed: int = 0,
    image_size: Optional[int] = None,
) -> nn.Module:
    """A fresh backbone to run (and partly train) live: built by name, or a copy of ``backbone`` when it is
    a module, so the caller's module and earlier runs' weights stay untouched. Unlike ``load_backbone`` it
    computes no weights id: nothing is hashed."""
    if isinstance(backbone, nn.Module):
        module = copy.deepcopy(backbone)
        if checkpoint is not None:
            load_backbone_weights(module, checkpoint)
        return module
    return _create_backbone(backbone, pretrained, checkpoint, seed, image_size)


def stage1_backbone(checkpoint: Union[str, Path]) -> Optional[nn.Module]:
    """The backbone of a stage-1 checkpoint of ``mmkit.train`` as it was trained (architecture, weights,
    and the normalisation it recorded), or None for a checkpoint without stage-1 meta (a plain state
    dict: ``create_backbone`` reads it)."""
    from mmkit.train import load_stage1, read_stage1_meta

    try:
        read_stage1_meta(checkpoint)
    except ValueError:
        return None
    return load_stage1(checkpoint).backbone


def stage1_norm(checkpoint: Optional[Union[str, Path]]) -> Any:
    """The (mean, std) a stage-1 checkpoint records, or None (no checkpoint, or no stage-1 meta)."""
    if checkpoint is None:
        return None
    from mmkit.train import read_stage1_meta

    try:
        return read_stage1_meta(checkpoint).get("norm")
    except ValueError:
        return None


def _create_backbone(
    name: str,
    pretrained: Optional[str],
    checkpoint: Optional[Union[str, Path]],
    seed: int,
    image_size: Optional[int],
) -> nn.Module:
    from mmkit.models import create_backbone

    if checkpoint is not None:
        module = stage1_backbone(checkpoint)  # its own architecture, norm and input size
        if module is not None:
            return module
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "backbone_init"))  # the init stage 1 of this seed starts from
        source = str(checkpoint) if checkpoint is not None else pretrained
        return create_backbone(name, pretrained=source, image_size=image_size)


def weights_id(
    pretrained: Optional[str], checkpoint: Optional[Union[str, Path]], module: Optional[nn.Module]
) -> str:
    """How the key names the weights: a checkpoint's weights hash (``checkpoint_weights_sha256``), a
    pretrained file's hash or tag, else the hash of the (random-init) weights."""
    if checkpoint is not None:
        return f"checkpoint:{checkpoint_weights_sha256(checkpoint)}"
    if pretrained is not None:
        return f"file:{file_sha256(pretrained)}" if Path(pretrained).is_file() else f"tag:{pretrained}"
    if module is None:
        raise ValueError("a random-init backbone is named by its weights: pass the module")
    return f"sha256:{weights_sha256(module)}"


def load_backbone_weights(module: nn.Module, checkpoint: Union[str, Path]) -> nn.Module:
    """Load a stage-1 checkpoint's backbone weights into ``module`` (strict on the backbone's keys).

    Accepts what ``mmkit.models.read_state_dict`` reads (a plain state dict, safetensors, or one held under
    "model"/"state_dict"/"backbone"/...), through its safe loader (``weights_only=True``: no code runs);
    keys prefixed "backbone." (a classifier wrapping the backbone) are unwrapped and the classifier dropped.
    """
    from mmkit.models import read_state_dict

    state = read_state_dict(checkpoint)
    own = set(module.state_dict())
    if not own & set(state):
        for prefix in ("backbone.", "module.backbone.", "model.backbone."):
            stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if own & set(stripped):
                state = stripped
                break
    missing = own - set(state)
    if missing:
        raise ValueError(
            f"{checkpoint}: {len(missing)} backbone weights missing (e.g. {sorted(missing)[:3]}); "
            "is it a checkpoint of this backbone?"
        )
    module.load_state_dict({k: state[k] for k in own}, strict=True)
    return module


# ------------------------------------------------------------------------------------------ bank folders
def default_bank_dir(out_dir: Union[None, str, Path] = None) -> Path:
    """Where banks go when no ``bank_dir`` is given: ``$MMKIT_CACHE/feature_bank`` when the environment sets
    ``MMKIT_CACHE`` (one cache for every run), else ``<out_dir>/feature_bank``; never inside the package.

    Example:
        >>> str(default_bank_dir("runs/04")) if "MMKIT_CACHE" not in os.environ else "runs/04/feature_bank"
        'runs/04/feature_bank'
    """
    cache = os.environ.get("MMKIT_CACHE")
    if cache:
        return Path(cache).expanduser() / "feature_bank"
    if out_dir is None:
        raise ValueError(
            "no folder for the feature bank: pass bank_dir (FusionConfig(bank_dir=...)), an out_dir, "
            "or set the MMKIT_CACHE environment variable"
        )
    return Path(out_dir) / "feature_bank"


_HOST = socket.gethostname().replace("-", "_")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{_HOST}-{os.getpid()}-{time.time_ns()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_tmp(cache_dir: Union[str, Path]) -> list[Path]:
    """Remove the half-written ``<hash>.tmp-<host>-<pid>-<n>`` folders of builds that were killed: those of
    this host whose process is gone, and the old ``<hash>.tmp-<n>`` ones (no owner recorded) older than a
    day. A live build's folder, or another host's (a shared file system), is left alone. Returns what
    was removed."""
    removed = []
    root = Path(cache_dir)
    if not root.is_dir():
        return removed
    for tmp in root.glob("*.tmp-*"):
        owner = tmp.name.rsplit(".tmp-", 1)[1].split("-")
        if len(owner) == 3:
            host, pid = owner[0], owner[1]
            stale = host == _HOST and pid.isdigit() and not _alive(int(pid))
        else:
            try:
                stale = time.time() - tmp.stat().st_mtime > 86400
            except OSError:
                continue
        if stale and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


# ------------------------------------------------------------------------------------------------ bank
@dataclass
class FeatureBank:
    """Cached image features: ``features["train"]`` [N, K, D], ``plain[split]`` [N, D] (eval view), float16.

    Rows follow ``ids[split]``; read them with ``lookup`` (by id) rather than by position. A cross-fitted
    bank (``mmkit.crossfit.cross_fitted_bank``) holds val/test as [N, F, D]: the eval view encoded by each
    of its F fold backbones.
    """

    path: Path
    key: dict[str, Any]
    ids: dict[str, list[str]]
    features: dict[str, np.ndarray]
    plain: dict[str, np.ndarray]
    reused: bool = False
    build_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {s: {k: i for i, k in enumerate(ids)} for s, ids in self.ids.items()}

    @property
    def views(self) -> int:
        return self.features["train"].shape[1]

    @property
    def dim(self) -> int:
        return self.plain["train"].shape[1]

    def rows(self, split: str, ids: list[str]) -> np.ndarray:
        """Positions of ``ids`` in this bank's ``split``; an unknown id is an error."""
        index = self._index[split]
        missing = [k for k in ids if k not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} {split} ids are not in the feature bank {self.path} (e.g. {missing[:3]})"
            )
        return np.array([index[k] for k in ids], dtype=np.int64)

    def lookup(self, split: str, ids: list[str], plain: bool = True) -> np.ndarray:
        """Features of ``ids``: the plain view [n, D] (``plain=True``) or all K views of train [n, K, D]."""
        src = self.plain[split] if plain or split != "train" else self.features["train"]
        return np.asarray(src[self.rows(split, ids)])


def _open_bank(path: Path, key: dict[str, Any], reused: bool) -> FeatureBank:
    meta = json.loads((path / "bank.json").read_text())
    ids = json.loads((path / "ids.json").read_text())
    features = {"train": np.load(path / "train_views.npy", mmap_mode="r")}
    plain = {s: np.load(path / f"{s}.npy", mmap_mode="r") for s in ids}
    return FeatureBank(path, key, ids, features, plain, reused, meta.get("build_seconds", 0.0), meta)


@torch.inference_mode()
def _extract(module: nn.Module, loader: Any, out: np.ndarray, device: torch.device, bar: Any) -> None:
    from mmkit.augment import normalize

    norm = getattr(module, "norm", "imagenet")
    for batch in loader:
        feats = module(normalize(batch["image"], norm, device=device)).float().cpu().numpy()
        idx, copy = batch["index"].numpy(), batch["copy"].numpy()
        if out.ndim == 3:
            out[idx, copy] = feats
        else:
            out[idx] = feats
        bar.update()


BANK_WAIT = timedelta(hours=24)  # how long the other ranks wait for rank 0's build under torchrun


def _rank0_builds(build: Callable[..., FeatureBank]) -> Callable[..., FeatureBank]:
    """Under torchrun (torch.distributed initialised, world > 1) only rank 0 runs ``build``; the other ranks
    wait for it and open the bank it wrote. Without this every rank would encode the whole dataset again,
    and race to rename the same folder.

    The wait is a broadcast on a gloo group of its own with a long timeout (``BANK_WAIT``): a large bank
    takes longer than NCCL's watchdog allows. A failure on rank 0 reaches the others as an error instead
    of a hang. ``cache_dir`` must be on a file system every rank sees (one machine: any local folder).
    """

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> FeatureBank:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return build(*args, **kwargs)
        group = dist.new_group(backend="gloo", timeout=BANK_WAIT)
        try:
            message: list[Any] = [None]
            if dist.get_rank() == 0:
                try:
                    bank = build(*args, **kwargs)
                except BaseException as err:
                    message = [f"{type(err).__name__}: {err}"]
                    dist.broadcast_object_list(message, 0, group=group)
                    raise
                message = [(str(bank.path), bank.key, bank.reused)]
                dist.broadcast_object_list(message, 0, group=group)
                return bank
            dist.broadcast_object_list(message, 0, group=group)  # waits while rank 0 builds
        finally:
            dist.destroy_process_group(group)
        if isinstance(message[0], str):
            raise RuntimeError(
                f"rank 0 could not build the feature bank, so this rank has none: {message[0]}"
            )
        path, key, reused = message[0]
        if not (Path(path) / "bank.json").exists():
            raise FileNotFoundError(
                f"rank 0 built the feature bank {path}, but rank {dist.get_rank()} cannot see it: put "
                "bank_dir (cache_dir=) on a file system every rank can read"
            )
        return _open_bank(Path(path), key, reused)

    return wrapper


@_rank0_builds
def build_feature_bank(
    dataset: Any,
    backbone: Union[str, nn.Module],
    *,
    pretrained: Optional[str] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    preset: str = "seed",
    views: int = 8,
    image_size: int = 224,
    seed: int = 0,
    batch_size: int = 32,
    cache_dir: Union[None, str, Path] = None,
    device: Optional[Union[str, torch.device]] = None,
    num_workers: int = 0,
) -> FeatureBank:
    """Compute (or reuse) the feature bank of ``dataset`` under a frozen ``backbone``.

    ``batch_size`` counts images per forward pass (samples x views for the training split). Under
    torchrun rank 0 builds the bank and the other ranks wait and open it. ``cache_dir`` None:
    ``$MMKIT_CACHE/feature_bank`` (``default_bank_dir``). A stage-1 ``checkpoint`` brings its own
    architecture and normalisation (``load_stage1``).

    Example:
        >>> bank = build_feature_bank(ds, "timm:test_resnet", views=4, image_size=64)  # doctest: +SKIP
    """
    from mmkit.augment import make_loader

    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    module: Optional[nn.Module] = None
    if isinstance(backbone, str) and (checkpoint is not None or pretrained is not None):
        name, weights = backbone, weights_id(pretrained, checkpoint, None)  # no need to build it to reuse
    else:
        module, name, weights = load_backbone(backbone, pretrained, checkpoint, seed, image_size)
    from mmkit.augment import preset_key  # a preset file is keyed by its content, not only its path

    norm = stage1_norm(checkpoint)
    key = bank_key(
        name, weights, preset_key(preset), views, image_size, seed, dataset_fingerprint(dataset), norm
    )
    cache = Path(cache_dir) if cache_dir is not None else default_bank_dir()
    path = cache / key_hash(key)
    if (path / "bank.json").exists():
        return _open_bank(path, key, reused=True)
    clean_stale_tmp(cache)

    start = time.perf_counter()
    if module is None:  # named by its weights file above (already hashed): only build it
        module = _create_backbone(backbone, pretrained, checkpoint, seed, image_size)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    was_training = module.training
    module.to(device).eval()  # frozen: BatchNorm uses its running statistics, dropout is off
    tmp = _tmp_name(path)
    tmp.mkdir(parents=True)
    try:
        ids = {s: [r.id for r in dataset.records(s)] for s in SPLITS if s in dataset.splits}
        n_train = len(ids["train"])
        train_views = np.lib.format.open_memmap(
            tmp / "train_views.npy", "w+", np.float16, (n_train, views, _dim(module))
        )
        per_batch = max(1, batch_size // views)
        loaders = {
            "train views": make_loader(
                dataset, "train", per_batch, copies=views, preset=preset, image_size=image_size,
                seed=derive_seed(seed, "bank_views"), num_workers=num_workers, shuffle=False,
            ),
            # The eval view of every split, in order; for "train" too (statistics, projections), where
            # augment and shuffle would otherwise default to on.
            **{split: make_loader(
                dataset, split, batch_size, preset=preset, image_size=image_size, seed=seed,
                num_workers=num_workers, augment=False, shuffle=False,
            ) for split, split_ids in ids.items() if split_ids},
        }  # fmt: skip
        loaders["train views"].set_epoch(0)
        # One bar for the whole build (train x K views, then each split's eval view).
        bar = progress(
            total=sum(len(v) for v in loaders.values()), desc=f"feature bank (K={views})", unit="batch"
        )
        bar.set_postfix_str("train views")
        _extract(module, loaders["train views"], train_views, device, bar)
        train_views.flush()
        for split, split_ids in ids.items():
            plain = np.lib.format.open_memmap(
                tmp / f"{split}.npy", "w+", np.float16, (len(split_ids), _dim(module))
            )
            if split_ids:
                bar.set_postfix_str(split)
                _extract(module, loaders[split], plain, device, bar)
            plain.flush()
            del plain
        bar.set_postfix_str("")
        bar.close()
        del train_views
        seconds = time.perf_counter() - start
        publish_bank(tmp, path, ids, {"key": key, "build_seconds": seconds, "device": str(device)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        module.train(was_training)
    return _open_bank(path, key, reused=False)


def publish_bank(tmp: Path, path: Path, ids: dict[str, list[str]], meta: dict[str, Any]) -> None:
    """Finish a bank written into ``tmp``: its ids and ``bank.json`` (written last: a folder without it is
    no bank), then one rename into ``path``. When another process published the same bank first, the rename
    fails and its copy is kept."""
    (tmp / "ids.json").write_text(json.dumps(ids))
    (tmp / "bank.json").write_text(json.dumps(meta, indent=2))
    try:
        tmp.rename(path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _dim(module: nn.Module) -> int:
    dim = getattr(module, "num_features", None)
    if dim is None:
        raise AttributeError(
            f"{type(module).__name__} has no num_features; a Backbone declares its output size"
        )
    return int(dim)


# -------------------------------------------------------------------------------------- stage-2 batches
class BankLoader:
    """Stage-2 batches from the bank: image features + text features (joined by id) + labels.

    Training: each epoch shuffles the samples and, for every sample in a batch, takes ``copies`` (M) of its
    K cached views. ``each_once=False``: M of the K drawn without replacement at every step (M <= K; views
    are reused across epochs). ``each_once=True`` (``bank_views="epochs"``): epoch e takes views
    e*M .. e*M+M-1, so over the epochs every (sample, view) is used exactly once (K >= epochs x M). The
    draw is seeded by (seed, epoch), so a resumed run repeats it exactly. ``modality_dropout`` adds
    per-sample ``image_present`` / ``text_present`` masks. Other splits: the plain view, in order, no masks;
    a cross-fitted bank's val/test rows carry one plain view per fold backbone ([B, F, D]: the model
    averages the F folds' predictions).

    The views stay memory-mapped (the bank's ``.npy`` file): each batch reads only its own rows, so a bank
    larger than RAM (K = epochs x M at real scale) trains as well as a small one.

    Batches are dicts in sample-major order: "features" float32 [B*M, D] (image), "text_features" float32
    [B*M, T], "label",
    "index" (position in ``dataset.records(split)``), "copy" (view number), "id".

    Example:
        >>> loader = BankLoader(bank, text, ds, "train", batch_size=32, copies=4, seed=0)  # doctest: +SKIP
        >>> loader.set_epoch(3); batch = next(iter(loader))  # doctest: +SKIP
    """

    def __init__(
        self,
        bank: FeatureBank,
        text: Any,
        dataset: Any,
        split: str,
        batch_size: int,
        copies: int = 1,
        seed: int = 0,
        shuffle: Optional[bool] = None,
        modality_dropout: float = 0.0,
        drop_last: bool = False,
        each_once: bool = False,
    ):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.train = split == "train"
        self.copies = copies if self.train else 1
        self.each_once = each_once and self.train
        if self.copies > bank.views and self.train:
            raise ValueError(f"copies={copies} views per step but the bank holds only K={bank.views}")
        self.shuffle = self.train if shuffle is None else shuffle
        self.modality_dropout = modality_dropout if self.train else 0.0
        self.drop_last = drop_last
        recs = dataset.records(split)
        ids = [r.id for r in recs]
        self.ids = ids
        self.rows = bank.rows(split, ids)  # join by id: the bank's row order does not matter
        # Kept as the bank holds them (a memmap for a bank on disk): each batch reads its own rows only.
        self.views = bank.features["train"] if self.train else None
        self.plain = None if self.train else bank.plain[split]
        self.text = torch.from_numpy(text.lookup(split, ids)).float()
        self.labels = torch.from_numpy(dataset.targets(split))
        self.epoch = 0

    @property
    def epochs_covered(self) -> Optional[int]:
        """With ``each_once``: how many epochs the bank's views last (K // M); else None (no limit)."""
        return self.views.shape[1] // self.copies if self.each_once else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.ids)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.ids)

    def _read(self, array: np.ndarray, rows: np.ndarray, views: Optional[np.ndarray] = None) -> torch.Tensor:
        # Fancy indexing a memmap reads only the rows asked for; sorted rows read the file front to back.
        order = np.argsort(rows, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        if views is None:
            out = np.asarray(array[rows[order]])[back]
        else:
            out = np.asarray(array[rows[order][:, None], views[order]])[back]
        return torch.from_numpy(out.astype(np.float32))

    def __iter__(self):
        gen = torch_generator(self.seed, "bank_batches", self.epoch)
        n = len(self.ids)
        if self.each_once and self.epoch >= self.epochs_covered:
            raise ValueError(
                f"epoch {self.epoch} needs views {self.epoch * self.copies}..{(self.epoch + 1) * self.copies - 1} "
                f"but the bank holds K={self.views.shape[1]} (bank_views='epochs' builds K = stage-2 "
                "epochs x copies): rebuild the bank for these epochs"
            )
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            m = self.copies
            rows = self.rows[idx.numpy()]
            if self.train:
                if self.each_once:  # this epoch's own M views: never seen in another epoch
                    first = self.epoch * m
                    pick = torch.arange(first, first + m).expand(len(idx), m)
                else:  # M distinct views of each sample: the first M of a random permutation of the K
                    pick = torch.rand(len(idx), self.views.shape[1], generator=gen).argsort(1)[:, :m]
                image = self._read(self.views, rows, pick.numpy()).reshape(len(idx) * m, -1)
                copy = pick.reshape(-1)
            else:
                image, copy = self._read(self.plain, rows), torch.zeros(len(idx), dtype=torch.long)
            rep = idx.repeat_interleave(m)
            batch = {
                "features": image,
                "text_features": self.text[rep],
                "label": self.labels[rep],
                "index": rep,
                "copy": copy,
                "id": [self.ids[i] for i in rep.tolist()],
            }
            if self.modality_dropout > 0:
                batch["image_present"], batch["text_present"] = modality_dropout_masks(
                    len(rep), self.modality_dropout, gen
                )
            yield batch


__all__ = [
    "BANK_VERSION",
    "BankLoader",
    "FeatureBank",
    "bank_bytes",
    "bank_key",
    "build_feature_bank",
    "checkpoint_weights_sha256",
    "clean_stale_tmp",
    "dataset_fingerprint",
    "default_bank_dir",
    "describe_bank_views",
    "file_sha256",
    "key_hash",
    "load_backbone",
    "load_backbone_weights",
    "publish_bank",
    "resolve_bank_views",
    "stage1_backbone",
    "stage1_norm",
    "state_sha256",
    "weights_sha256",
    "weights_id",
]
