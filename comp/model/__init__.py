"""Models: build the backbone named by ``[model]``, load its weights, freeze it, group its params.

``build_model(cfg, num_classes)`` gives a timm model (``source = "timm"``, any registered timm
name) or one of comp's hand-built ResNets (``source = "hand"``: resnet18/34/50/101/152, with
the same parameter names as torchvision's and timm's). ``head = "regression"`` gives one output.

``stem = "small"`` swaps a ResNet's 7×7 stride-2 conv and max-pool (a 4× downsampling meant for
224-px photographs) for a 3×3 stride-1 conv, the CIFAR ResNet stem: on 28–64 px images the
last stage then still sees a 4×4 to 8×8 map instead of 1×1. It costs as much as a default stem
at 4× the image side. It applies to any model with ``conv1`` and ``maxpool`` (comp's and timm's
ResNets); a pretrained ``conv1`` of the other shape is skipped and reported.

Pretrained weights:

* ``pretrained = true`` asks timm for its weights from the Hugging Face Hub. Weights already in
  the local cache load without touching the network. Otherwise, when the Hub is unreachable (or
  ``HF_HUB_OFFLINE=1``), it fails at once with a message to point ``pretrained`` at a file; it
  never sits through the Hub client's retries. Hand-built models have no hub weights.
* ``pretrained = "path/to/weights.pth"`` (``.pt``/``.bin``/``.safetensors``) loads a state dict
  from a file (see :mod:`comp.model.weights`); a head of another size is skipped and reported.

Freezing (``freeze``):

* ``"none"``: everything trains.
* ``"backbone"``: only the classifier head (``model.get_classifier()``) trains.
* ``N`` (an integer): the stem and the first ``N`` stages are frozen; ``0`` freezes nothing, and
  for a ResNet ``1`` freezes conv1/bn1 + layer1, ..., ``4`` everything but ``fc``. Stages are
  timm's coarse parameter groups (``model.group_matcher(coarse=True)``), so this also works for
  other timm families (ConvNeXt stages, EfficientNet block groups, ViT blocks).

Frozen BatchNorm layers keep their running statistics: call :func:`train_mode` instead of
``model.train()`` at the start of every training epoch.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from comp.errors import CompError, first_line
from comp.model.resnet import RESNETS, ResNet
from comp.model.weights import LoadReport, load_pretrained, read_state_dict
from comp.recipe import ModelConfig

__all__ = ["build_model", "use_small_stem", "apply_freeze", "train_mode", "param_groups", "head_parameter_names",
           "load_pretrained", "read_state_dict", "LoadReport", "ResNet", "RESNETS"]

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT = 3.0  # seconds to wait for a TCP connection to the Hub before calling it offline


def build_model(model_cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The model described by ``[model]``, with ``num_classes`` outputs (1 for regression).

    Loads pretrained weights (logging a one-line summary for a weights file) and
    applies ``freeze``. Every failure the user can fix is a :class:`CompError`.
    """
    # ``model_cfg`` was checked when the recipe loaded (source, stem, drop rates, freeze, hub
    # weights for hand-built models); what is checked here is only known now: the model name
    # (timm's registry), the classes, the model's stages and the weights file.
    outputs = 1 if model_cfg.head == "regression" else int(num_classes)
    if outputs < 1:  # the classes come from the data (or a run's run.json), not the recipe
        raise CompError(f"[model] a classification head needs at least 1 class, got {num_classes}")
    build = _build_hand if model_cfg.source == "hand" else _build_timm
    model = build(model_cfg, outputs)
    if model_cfg.stem == "small":
        use_small_stem(model, model_cfg.name)
    pretrained = model_cfg.pretrained
    if isinstance(pretrained, str) and pretrained:
        report = load_pretrained(model, pretrained)
        logger.info(f"pretrained weights {pretrained}: {report.summary()}")
    apply_freeze(model, model_cfg)
    return model


def use_small_stem(model: nn.Module, name: str = "") -> nn.Module:
    """Replace ``conv1`` by a 3×3 stride-1 conv and ``maxpool`` by identity, in place.

    When ``pretrained = true`` (hub weights, loaded at creation) the new ``conv1`` is freshly
    initialised: a 7×7 filter bank has no 3×3 stride-1 equivalent.
    """
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(getattr(model, "maxpool", None), nn.Module):
        raise CompError(f"[model] stem = \"small\" needs a ResNet-style model with a conv1 layer and a "
                        f"maxpool; {name or type(model).__name__} has none (use stem = \"default\")")
    small = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1,
                      bias=conv.bias is not None)
    nn.init.kaiming_normal_(small.weight, mode="fan_out", nonlinearity="relu")
    if small.bias is not None:
        nn.init.zeros_(small.bias)
    model.conv1 = small.to(device=conv.weight.device, dtype=conv.weight.dtype)
    model.maxpool = nn.Identity()
    return model


# --------------------------------------------------------------------------- hand-built


def _build_hand(model_cfg: ModelConfig, outputs: int) -> ResNet:
    if model_cfg.name not in RESNETS:
        raise CompError(f"[model] name {model_cfg.name!r} is not a hand-built model "
                        f"(source = \"hand\" has: {', '.join(RESNETS)})")
    return RESNETS[model_cfg.name](num_classes=outputs, drop_rate=model_cfg.drop_rate,
                                   drop_path_rate=model_cfg.drop_path_rate)


# --------------------------------------------------------------------------- timm


def _build_timm(model_cfg: ModelConfig, outputs: int) -> nn.Module:
    import timm

    name = model_cfg.name
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
        raise CompError(f"[model] name {name!r} is not a timm model{hint}")
    kwargs = dict(num_classes=outputs, drop_rate=model_cfg.drop_rate)
    if model_cfg.drop_path_rate > 0:  # only when asked: not every timm family takes the argument
        kwargs["drop_path_rate"] = model_cfg.drop_path_rate
    if model_cfg.pretrained is not True:
        return _create_timm(name, False, kwargs)

    from huggingface_hub import constants

    offline = bool(getattr(constants, "HF_HUB_OFFLINE", False)) or not _hub_reachable()
    try:
        if offline:
            with _offline_hub():
                return _create_timm(name, True, kwargs)
        return _create_timm(name, True, kwargs)
    except CompError:
        raise
    except Exception as err:  # noqa: BLE001 - hub, HTTP and file errors all mean "no weights"
        if offline:
            why = "they are not in the local cache and the Hugging Face Hub is unreachable (offline)"
        else:
            why = first_line(err)
        raise CompError(f"[model] pretrained = true: cannot get timm's weights for {name}: {why}; "
                        "set pretrained to a weights file path (.pth/.safetensors) instead") from None


def _create_timm(name: str, pretrained: bool, kwargs: dict) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        settings = ", ".join(f"{k} = {kwargs[k]}" for k in ("drop_rate", "drop_path_rate") if k in kwargs)
        raise CompError(f"[model] timm model {name} does not accept these settings "
                        f"({settings}): {first_line(err)}") from None


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds.

    Runs in a daemon thread so a slow DNS lookup cannot hold the caller past the timeout. Behind
    a proxy a direct connection says nothing, so a configured proxy counts as reachable.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    if not url.hostname:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    ok = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout):
                ok.set()
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            pass

    thread = threading.Thread(target=probe, daemon=True, name="hub-probe")
    thread.start()
    thread.join(timeout)
    return ok.is_set()


@contextlib.contextmanager
def _offline_hub() -> Iterator[None]:
    """Cache-only weight lookups: Hub offline mode on, and no torch.hub URL downloads."""
    import torch.hub
    from huggingface_hub import constants

    def no_download(url: str, *args, **kwargs) -> None:
        raise OSError(f"offline: not downloading {url}")

    saved = constants.HF_HUB_OFFLINE, torch.hub.download_url_to_file
    constants.HF_HUB_OFFLINE = True
    torch.hub.download_url_to_file = no_download
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, torch.hub.download_url_to_file = saved


# --------------------------------------------------------------------------- freezing


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the classifier head's parameters, found through timm's ``get_classifier()``."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        raise CompError(f"{type(model).__name__} has no get_classifier(); cannot tell its head apart")
    heads = get()
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)
    ids = {id(p) for head in heads if isinstance(head, nn.Module) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def _stages(model: nn.Module, name: str) -> list[list[str]]:
    """Parameter names grouped as [stem, stage 1, ..., stage S], heads left out."""
    from timm.models import group_parameters

    matcher = getattr(model, "group_matcher", None)
    try:
        groups = group_parameters(model, matcher(coarse=True), reverse=False) if matcher else None
    except NotImplementedError:
        groups = None
    if not groups:
        raise CompError(f'[model] freeze = <number> is not supported for {name} (timm defines no '
                        'stages for it); use freeze = "backbone" or "none"')
    head = head_parameter_names(model)
    return [names for _, names in sorted(groups.items()) if not head.intersection(names)]


def apply_freeze(model: nn.Module, model_cfg: ModelConfig) -> list[str]:
    """Set ``requires_grad = False`` as ``[model] freeze`` says; returns the frozen names.

    ``"none"``: nothing; ``"backbone"``: all but the classifier head; ``N``: the stem and the first
    ``N`` stages (``0``: nothing). Frozen BatchNorm layers are put in eval mode.
    """
    freeze = model_cfg.freeze
    if freeze == "none" or freeze == 0:
        frozen: set[str] = set()
    elif freeze == "backbone":
        head = head_parameter_names(model)
        if not head:
            raise CompError(f'[model] freeze = "backbone": {model_cfg.name} has no classifier '
                            "parameters left to train")
        frozen = {n for n, _ in model.named_parameters() if n not in head}
    else:  # a number of stages (the recipe's check: "none", "backbone" or an integer >= 0)
        stages = _stages(model, model_cfg.name)
        if freeze > len(stages) - 1:
            raise CompError(f"[model] freeze = {freeze} is more than the {len(stages) - 1} stages "
                            f"of {model_cfg.name}")
        frozen = {n for group in stages[: freeze + 1] for n in group}
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    _frozen_norms_eval(model)
    return [n for n, _ in model.named_parameters() if n in frozen]


def _frozen_norms_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def train_mode(model: nn.Module, model_cfg: ModelConfig) -> nn.Module:
    """``model.train()``, except that frozen BatchNorm layers stay in eval mode.

    A BatchNorm counts as frozen when none of its affine parameters requires grad (as
    :func:`apply_freeze` leaves them), so its running statistics are not updated either.
    """
    model.train()
    if model_cfg.freeze not in ("none", 0):
        _frozen_norms_eval(model)
    return model


# --------------------------------------------------------------------------- optimiser groups


def param_groups(model: nn.Module, model_cfg: ModelConfig, lr: float,
                 weight_decay: float) -> list[dict]:
    """Optimiser parameter groups: head at ``lr``, backbone at ``lr * backbone_lr_mult``.

    Frozen parameters are left out. Biases, norm weights (every 1-D parameter) and whatever the
    model lists in ``no_weight_decay()`` (e.g. ViT position embeddings) get no weight decay, as
    in timm. Each group carries a ``name`` ("head", "head_no_decay", "backbone",
    "backbone_no_decay"); empty groups are dropped.
    """
    mult = model_cfg.backbone_lr_mult  # not negative: checked when the recipe loaded
    head = head_parameter_names(model)
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    buckets: dict[str, list[torch.nn.Parameter]] = {
        "head": [], "head_no_decay": [], "backbone": [], "backbone_no_decay": []}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or n.endswith(".bias") or n in skip
        part = "head" if n in head else "backbone"
        buckets[part + ("_no_decay" if no_decay else "")].append(p)
    groups = []
    for key, params in buckets.items():
        if params:
            groups.append({"name": key, "params": params,
                           "lr": lr if key.startswith("head") else lr * mult,
                           "weight_decay": 0.0 if key.endswith("no_decay") else weight_decay})
    if not groups:
        raise CompError(f"[model] {model_cfg.name} has no trainable parameters (check freeze)")
    return groups
