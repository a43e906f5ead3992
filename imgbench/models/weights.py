"""The one way pretrained weights get into a model (the counterpart of timm's ``load_pretrained``).

:func:`load_pretrained` takes the model's default weights (``pretrained=True``: a download, from the Hugging
Face hub for timm's models or torchvision's weights enum), a file (:func:`load_state_dict_file`: a state_dict in
``.safetensors`` or ``.pth``, or a checkpoint such as imgbench's ``.ckpt``) or a torchvision weight name
(``IMAGENET1K_V1``). It strips a ``module.`` / ``model.`` / ``net.`` prefix where that makes the keys fit, lets the
model adapt the file's layout (its :class:`PretrainedCfg`'s ``filter_fn``), adapts a 3-channel first convolution
to the model's channels (timm's ``adapt_input_conv``: summed for gray images), leaves a classifier of another
class count freshly initialised (one log line names the keys dropped and added), checks that everything else fits
and loads it. A model class takes pretrained weights by setting a ``pretrained_cfg`` class attribute and a
``pretrained`` argument; :func:`imgbench.models.registry.build_model` calls the loader after building the model,
the timm and torchvision factories (:mod:`imgbench.models.hub`) pass their own cfg.

After loading, the mean and std the weights expect are recorded on the model (:func:`pretrained_stats`);
:func:`classifier_prefix` names the final classifier layer (to freeze the backbone or give the head its own
learning rate).

Every problem with weights (missing, unreadable, not a state_dict, not fitting the model, a failed download) is a
one-line :class:`~imgbench.errors.CheckpointError`; offline, a download fails within seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import safetensors.torch
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import RemoteEntryNotFoundError
from timm.models import adapt_input_conv
from torch import nn
from torchvision import models as tv_models

from ..errors import CheckpointError

__all__ = [
    "PretrainedCfg",
    "StateDict",
    "classifier_prefix",
    "layers_with_weights",
    "load_pretrained",
    "load_state_dict_file",
    "pretrained_stats",
]

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
FilterFn = Callable[[StateDict, nn.Module, str], StateDict]
Names = str | tuple[str, ...] | None

STATS_ATTR = "pretrained_mean_std"  # set on a model by load_pretrained: (mean, std) its weights expect
PREFIXES = ("module.", "model.", "net.")  # DDP's, a Lightning module's attribute, imgbench's module attribute
CONNECT_TIMEOUT_S = 5  # offline, a download must fail at once, not after the hub's retries (about 25 s)
READ_TIMEOUT_S = 20  # a connection or download that stalls this long fails instead of hanging
HF_FALLBACK_FILE = "pytorch_model.bin"  # hub repos without model.safetensors


@dataclass(frozen=True)
class PretrainedCfg:
    """How a model takes pretrained weights: the hooks and sources :func:`load_pretrained` uses.

    Attributes:
        name: The model's name in messages (its registry name, or ``timm resnet18``).
        torchvision_weights: The name of the torchvision weights enum (``"AlexNet_Weights"``): its member names
            (``IMAGENET1K_V1``, ``DEFAULT``) are accepted instead of a file and downloaded, ``pretrained=True``
            takes ``DEFAULT``, and its transforms give the mean and std; None: no such enum.
        classifier: The module path(s) of the final classifier (``"classifier.6"``): when its tensors do not fit
            the file's (another ``num_classes``), it keeps its fresh initialisation. None: no exception.
        filter_fn: ``filter_fn(state, model, source) -> state`` maps the file's keys onto the model's (and raises
            CheckpointError for a file it cannot use); None: the file has the model's own key layout.
        strict: Whether every tensor of the model must come from the file (the classifier excepted).
        first_conv: The module path(s) of the input convolution(s): a file's 3-channel weights are adapted to the
            model's channel count. None: no adaptation.
        hf_hub_id: The Hugging Face repo of the default weights (``"timm/resnet18.a1_in1k"``).
        hf_hub_filename: The file in that repo; None: ``model.safetensors`` (else ``pytorch_model.bin``).
        url: A URL of the default weights, used without ``hf_hub_id``.
        mean: The per-channel mean the weights expect (with ``std``); None: from ``torchvision_weights``, if any.
        std: The per-channel std the weights expect.
    """

    name: str
    torchvision_weights: str | None = None
    classifier: Names = None
    filter_fn: FilterFn | None = None
    strict: bool = True
    first_conv: Names = None
    hf_hub_id: str | None = None
    hf_hub_filename: str | None = None
    url: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def _names(value: Names) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


# ---------------------------------------------------------------------------- downloads


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """A timeout for sockets opened meanwhile (urllib, used by torch.hub, has none: it would wait forever)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def _probe(url: str) -> None:
    """Connect to ``url``'s host once, briefly; raises OSError when it cannot be reached (skipped behind a proxy)."""
    parsed = urlparse(url)
    if parsed.scheme in urllib.request.getproxies():
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()


def _hf_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    return flag or bool(hf_constants.HF_HUB_OFFLINE)


def _download_hf(repo_id: str, filename: str | None) -> Path:
    """The cached or downloaded file of a Hugging Face repo (safetensors first), without the hub's long retries."""
    names = [filename] if filename else ["model.safetensors", HF_FALLBACK_FILE]
    for name in names:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return Path(cached)
    page = f"{hf_constants.ENDPOINT}/{repo_id}"
    try:
        if _hf_offline():
            raise OSError("HF_HUB_OFFLINE is set")
        _probe(hf_constants.ENDPOINT)
        for name in names[:-1]:
            with contextlib.suppress(RemoteEntryNotFoundError):  # no safetensors in the repo: the .bin next
                return Path(hf_hub_download(repo_id, name, etag_timeout=CONNECT_TIMEOUT_S))
        return Path(hf_hub_download(repo_id, names[-1], etag_timeout=CONNECT_TIMEOUT_S))
    except Exception as e:  # no network, proxy, no such file, disk full, ...
        raise CheckpointError(
            f"could not download {repo_id} ({type(e).__name__}: {e}); download {page} ({names[0]}) on a machine "
            "with internet and pass model.pretrained=<file>"
        ) from None


def _download_url(url: str, origin: str) -> Path:
    """The file at ``url``, kept in torch.hub's cache (``$TORCH_HOME/hub/checkpoints``)."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not path.is_file():
        try:
            with _socket_timeout(READ_TIMEOUT_S):
                _probe(url)
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(path), progress=False)
        except Exception as e:  # no network, proxy, disk full, ...
            raise CheckpointError(
                f"could not download {origin} ({type(e).__name__}: {e}); download {url} on a machine with internet "
                "and pass model.pretrained=<file>"
            ) from None
    return path


def _torchvision_state(enum_name: str, member: str) -> StateDict:
    """The torchvision weights ``enum_name.member``, downloaded once into torch.hub's cache."""
    weights = getattr(tv_models, enum_name)[member]
    try:
        with _socket_timeout(READ_TIMEOUT_S):
            return weights.get_state_dict(progress=False)
    except Exception as e:  # no network, proxy, disk full, ...
        raise CheckpointError(
            f"could not download torchvision's {enum_name}.{member} ({type(e).__name__}: {e}); download "
            f"{weights.url} on a machine with internet and pass model.pretrained=<file>"
        ) from None


# ---------------------------------------------------------------------------- reading


def _read_file(path: Path) -> tuple[StateDict, bool]:
    """A state_dict file's tensors, and whether it was a training checkpoint (not published weights)."""
    try:
        if path.suffix == ".safetensors":
            obj = safetensors.torch.load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable weights file ({type(e).__name__}: {e})") from None
    checkpoint = False
    if isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
        if inner is not None:  # a checkpoint: Lightning's or imgbench's (state_dict), DeiT's (model)
            obj, checkpoint = inner, True
            if any(k.startswith("net.") for k in obj):  # an imgbench checkpoint: the model is the module's `net`
                obj = {k[4:]: v for k, v in obj.items() if k.startswith("net.")}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj), checkpoint


def load_state_dict_file(source: str | os.PathLike, torchvision_weights: str | None = None) -> StateDict:
    """Read a state_dict.

    Args:
        source: A ``.safetensors`` file (``safetensors.torch.load_file``), or a file read with
            ``torch.load(weights_only=True)``: a plain state_dict, or a checkpoint with a ``state_dict`` (of an
            imgbench checkpoint, the ``net.`` keys are taken) or ``model`` entry. Or, when ``torchvision_weights``
            is given, one of that enum's names (``IMAGENET1K_V1``, ``DEFAULT``), downloaded once into torch's cache.
        torchvision_weights: The name of a torchvision weights enum, e.g. ``"AlexNet_Weights"``.

    Returns:
        The state_dict, names to tensors.

    Raises:
        CheckpointError: The file does not exist (and is no weight name), cannot be read, holds no state_dict, or
            the download fails.
    """
    return _read(source, PretrainedCfg("the model", torchvision_weights))[0]


def _read(source: str | os.PathLike | bool, cfg: PretrainedCfg) -> tuple[StateDict, str, bool]:
    """The state_dict of ``source``, its name for messages, and whether its mean and std are the model's defaults."""
    if source is True:
        if cfg.hf_hub_id:
            return _read_file(_download_hf(cfg.hf_hub_id, cfg.hf_hub_filename))[0], cfg.hf_hub_id, True
        if cfg.url:
            return _read_file(_download_url(cfg.url, f"{cfg.name}'s weights"))[0], cfg.url, True
        if cfg.torchvision_weights:
            member = getattr(tv_models, cfg.torchvision_weights).DEFAULT.name
            return _torchvision_state(cfg.torchvision_weights, member), f"{cfg.torchvision_weights}.{member}", True
        raise CheckpointError(f"{cfg.name} has no default pretrained weights; pass model.pretrained=<state_dict file>")
    path = Path(source).expanduser()
    if path.is_file():
        state, checkpoint = _read_file(path)
        return state, str(source), not checkpoint
    if cfg.torchvision_weights is None:
        default = " or true (the default weights)" if cfg.hf_hub_id or cfg.url else ""
        raise CheckpointError(f"pretrained weights {path} do not exist; pass a state_dict file{default}")
    enum = getattr(tv_models, cfg.torchvision_weights)
    if str(source) not in enum.__members__:
        example = Path(urlparse(enum.DEFAULT.url).path).name
        raise CheckpointError(
            f"pretrained weights {path} do not exist; pass a state_dict file (e.g. torchvision's {example}), "
            f"true (the default weights) or one of {', '.join(enum.__members__)}"
        )
    member = enum[str(source)].name  # DEFAULT is an alias of a member
    return _torchvision_state(cfg.torchvision_weights, member), f"{cfg.torchvision_weights}.{member}", True


# ---------------------------------------------------------------------------- fitting the file to the model


def layers_with_weights(state: Mapping[str, torch.Tensor], ndim: int) -> list[tuple[str, str | None]]:
    """The layers of a state_dict with weights of ``ndim`` dimensions, in order (for ``filter_fn`` hooks).

    Args:
        state: A state_dict.
        ndim: 4 for convolutions, 2 for linear layers.

    Returns:
        ``(weight key, bias key or None)`` per layer.
    """
    found = []
    for key, value in state.items():
        if key.endswith("weight") and value.ndim == ndim:
            bias = key[: -len("weight")] + "bias"
            found.append((key, bias if bias in state else None))
    return found


def _strip_prefixes(state: StateDict, own: Mapping[str, torch.Tensor]) -> StateDict:
    """Strip a prefix every key has (``module.``, ``model.``, ``net.``), again and again, while more keys then fit."""
    while True:
        prefix = next((p for p in PREFIXES if state and all(k.startswith(p) for k in state)), None)
        if prefix is None:
            return state
        stripped = {k[len(prefix) :]: v for k, v in state.items()}
        if len(own.keys() & stripped.keys()) <= len(own.keys() & state.keys()):
            return state
        state = stripped


def _adapt_first_conv(state: StateDict, own: Mapping[str, torch.Tensor], cfg: PretrainedCfg) -> list[str]:
    """Adapt the file's input convolution(s) to the model's channel count, in place (timm's rule); the notes."""
    notes = []
    for conv in _names(cfg.first_conv):
        key = f"{conv}.weight"
        if key not in state or key not in own or state[key].ndim != 4 or own[key].ndim != 4:
            continue
        theirs, ours = state[key].shape, own[key].shape
        if theirs[1] != ours[1] and (theirs[0], *theirs[2:]) == (ours[0], *ours[2:]):
            try:
                state[key] = adapt_input_conv(ours[1], state[key])
            except (NotImplementedError, ValueError, AssertionError) as e:
                raise CheckpointError(f"{cfg.name}: cannot adapt {key} to {ours[1]} channels ({e})") from None
            notes.append(f"{key} adapted from {theirs[1]} to {ours[1]} input channels")
    return notes


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape)


def _listing(label: str, keys: list[str]) -> str:
    return f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"


def _model_cfg(model: nn.Module) -> PretrainedCfg:
    cfg = getattr(model, "pretrained_cfg", None)  # timm's models have a dict of their own there
    return cfg if isinstance(cfg, PretrainedCfg) else PretrainedCfg(type(model).__name__)


def load_pretrained(
    model: nn.Module, source: str | os.PathLike | bool, cfg: PretrainedCfg | None = None, in_channels: int | None = None
) -> None:
    """Load pretrained weights into ``model``, in place, and record the mean and std they expect.

    Args:
        model: The freshly built model.
        source: True (the model's default weights: ``cfg``'s hub repo, URL or torchvision ``DEFAULT``, downloaded
            once), a weights file or a torchvision weight name (see :func:`load_state_dict_file`).
        cfg: The model's hooks and sources; default ``model.pretrained_cfg`` (or: the model's own layout, strict).
        in_channels: The channels of the model's input, for the recorded mean and std: 1 takes the averages of
            RGB's (the first conv's weights are summed), more repeat them (as the weights are); None: as they are.

    Raises:
        CheckpointError: The weights cannot be read or downloaded, or do not fit the model: missing, unexpected or
            wrongly shaped tensors (a classifier of another class count excepted), or whatever ``cfg.filter_fn``
            rejects.
    """
    cfg = cfg or _model_cfg(model)
    state, label, published = _read(source, cfg)
    own = model.state_dict()
    state = _strip_prefixes(state, own)
    if cfg.filter_fn is not None:
        state = cfg.filter_fn(state, model, label)
    notes = _adapt_first_conv(state, own, cfg)

    heads = tuple(f"{c}." for c in _names(cfg.classifier))
    ours = [k for k in own if k.startswith(heads)] if heads else []
    theirs = [k for k in state if k.startswith(heads)] if heads else []
    replace = sorted(ours) != sorted(theirs) or any(state[k].shape != own[k].shape for k in ours)
    skip = set(ours) | set(theirs) if replace else set()  # another class count: the classifier stays fresh
    missing = [k for k in own if k not in state and k not in skip] if cfg.strict else []
    unexpected = [k for k in state if k not in own and k not in skip]
    wrong = [
        f"{k} (file {_shape(state[k])}, model {_shape(own[k])})"
        for k in own
        if k in state and k not in skip and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            _listing(what, keys)
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise CheckpointError(f"pretrained weights {label} do not fit {cfg.name} ({'; '.join(parts)})")
    model.load_state_dict({k: v for k, v in state.items() if k not in skip}, strict=cfg.strict and not skip)

    if replace:
        dropped = ", ".join(f"{k} ({_shape(state[k])})" for k in sorted(theirs)) or "nothing"
        added = ", ".join(f"{k} ({_shape(own[k])})" for k in sorted(ours)) or "nothing"
        notes.append(f"classifier replaced (another class count): dropped {dropped}; added {added}")
    fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in state and k not in skip})
    if fresh:
        notes.append(f"freshly initialised: {', '.join(fresh)}")
    log.info("%s: loaded %s%s", cfg.name, label, "".join(f"; {n}" for n in notes))
    stats = _stats(cfg, in_channels) if published else None  # a training checkpoint's data had its own statistics
    if stats is not None:
        setattr(model, STATS_ATTR, stats)


# ---------------------------------------------------------------------------- what the loaded model expects


def _stats(cfg: PretrainedCfg, channels: int | None) -> tuple[list[float], list[float]] | None:
    if cfg.mean is not None and cfg.std is not None:
        mean, std = [float(m) for m in cfg.mean], [float(s) for s in cfg.std]
    elif cfg.torchvision_weights:
        transform = getattr(tv_models, cfg.torchvision_weights).DEFAULT.transforms()
        mean, std = [float(m) for m in transform.mean], [float(s) for s in transform.std]
    else:
        return None
    if channels == 1 and len(mean) > 1:  # gray: the input conv sums RGB's weights (or the model replicates it)
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    if channels and channels != len(mean):  # adapt_input_conv repeats the channels
        return [mean[i % len(mean)] for i in range(channels)], [std[i % len(std)] for i in range(channels)]
    return mean, std


def pretrained_stats(net: nn.Module) -> tuple[list[float], list[float]] | None:
    """The per-channel mean and std the model's pretrained weights expect (for the data's normalisation).

    Args:
        net: A model from the registry.

    Returns:
        ``(mean, std)`` recorded by :func:`load_pretrained` (timm's pretrained cfg, torchvision's transforms:
        ImageNet's), or None when the model was built without pretrained weights, or from a training checkpoint
        (whose data had its own normalisation).
    """
    return getattr(net, STATS_ATTR, None)


def classifier_prefix(net: nn.Module) -> str | None:
    """The state_dict key prefix of the final classifier layer (``"fc"``, ``"classifier.6"``, ``"head.fc"``).

    Args:
        net: A model from the registry (ours, timm's or torchvision's) or any classifier.

    Returns:
        The module path: the model's :class:`PretrainedCfg` classifier, timm's ``get_classifier()``, else the last
        ``nn.Linear``; None when the model has no layer with parameters there.
    """
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, PretrainedCfg) and _names(cfg.classifier):
        return _names(cfg.classifier)[0]
    modules = dict(net.named_modules())
    get_classifier = getattr(net, "get_classifier", None)
    if callable(get_classifier):  # timm
        head = get_classifier()
        name = next((n for n, m in modules.items() if m is head and n), None)
        if name is not None and any(True for _ in head.parameters()):
            return name
    return next((n for n, m in reversed(modules.items()) if isinstance(m, nn.Linear)), None)
