"""Fine-tuning as config: the classifier head apart from the backbone, its own learning rate, a frozen start.

The head is the model's final classifier (:func:`imgbench.models.classifier_prefix`); everything else in the
network is the backbone. Parameters the LightningModule adds outside the network (none in the classifier) count
as head: they are new.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class FinetuneConfig:
    """How the backbone is treated.

    Attributes:
        freeze_backbone_epochs: train only the head for the first this many epochs (0: never frozen).
        backbone_lr_scale: the backbone's learning rate is the optimizer's times this (the head's is the optimizer's).
        no_weight_decay_norm_bias: no weight decay on biases and normalisation weights (every parameter of one
            dimension), as current ImageNet recipes do.
    """

    freeze_backbone_epochs: int = 0
    backbone_lr_scale: float = 1.0
    no_weight_decay_norm_bias: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.freeze_backbone_epochs, bool) or not isinstance(self.freeze_backbone_epochs, int):
            raise ValueError(f"freeze_backbone_epochs must be a whole number, got {self.freeze_backbone_epochs!r}")
        if self.freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be >= 0, got {self.freeze_backbone_epochs}")
        if isinstance(self.backbone_lr_scale, bool) or not isinstance(self.backbone_lr_scale, int | float):
            raise ValueError(f"backbone_lr_scale must be a number, got {self.backbone_lr_scale!r}")
        if not self.backbone_lr_scale >= 0:
            raise ValueError(f"backbone_lr_scale must be >= 0, got {self.backbone_lr_scale}")
        if not isinstance(self.no_weight_decay_norm_bias, bool):
            raise ValueError(f"no_weight_decay_norm_bias must be true or false, got {self.no_weight_decay_norm_bias!r}")

    @property
    def active(self) -> bool:
        """Whether anything differs from one group of every parameter, trained throughout."""
        return bool(self.freeze_backbone_epochs or self.backbone_lr_scale != 1.0 or self.no_weight_decay_norm_bias)


def is_head(name: str, head: str | None) -> bool:
    """Whether the module's parameter ``name`` belongs to the head (the network's parameters start with ``net.``).

    Args:
        name: a parameter name of the LightningModule.
        head: the network's classifier prefix (None: the network has no recognisable head: all backbone).

    Returns:
        True for the head's parameters and for parameters outside the network.
    """
    if not name.startswith("net."):
        return True
    inner = name[len("net.") :]
    return head is not None and (inner == head or inner.startswith(f"{head}."))


def parameter_groups(
    named: list[tuple[str, nn.Parameter]], head: str | None, cfg: FinetuneConfig, lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: head and backbone, each with and without weight decay where asked.

    Args:
        named: the LightningModule's named parameters.
        head: the network's classifier prefix.
        cfg: the fine-tuning settings.
        lr: the optimizer's learning rate (the head's).
        weight_decay: the optimizer's weight decay.

    Returns:
        Groups with ``params``, ``lr``, ``weight_decay`` and a ``name`` (``head``, ``backbone``, ``... no decay``).
    """
    groups: dict[str, dict[str, Any]] = {}
    for name, param in named:
        part = "head" if is_head(name, head) else "backbone"
        decay = not (cfg.no_weight_decay_norm_bias and param.ndim <= 1)
        key = part if decay else f"{part} no decay"
        group = groups.setdefault(
            key,
            {
                "name": key,
                "params": [],
                "lr": lr * (cfg.backbone_lr_scale if part == "backbone" else 1.0),
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(param)
    return list(groups.values())


def optimizer_defaults(factory: Any) -> tuple[float, float]:
    """The learning rate and weight decay an optimizer factory (a partial of the optimizer class) will use.

    Args:
        factory: ``functools.partial(torch.optim.X, lr=..., ...)`` from the optimizer config.

    Returns:
        ``(lr, weight_decay)``: the partial's values, else the class's defaults.
    """
    keywords = getattr(factory, "keywords", {})
    params = inspect.signature(getattr(factory, "func", factory)).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    lr = keywords.get("lr", defaults.get("lr", 1e-3))
    return float(lr), float(keywords.get("weight_decay", defaults.get("weight_decay", 0.0)))


def drop_backbone_grads(named: list[tuple[str, nn.Parameter]], head: str | None) -> None:
    """Freeze the backbone for this step: its gradients are dropped, so the optimizer leaves it as it is.

    Dropping gradients rather than switching ``requires_grad`` off keeps DDP's gradient reduction as it was set up
    (all processes agree on the parameters that take part) and needs no new optimizer when the backbone thaws.

    Args:
        named: the LightningModule's named parameters.
        head: the network's classifier prefix.
    """
    for name, param in named:
        if not is_head(name, head):
            param.grad = None


def summary(
    named: list[tuple[str, nn.Parameter]], head: str | None, cfg: FinetuneConfig, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """What ``metrics.json`` records of the fine-tuning: the head, what was frozen, the groups' learning rates.

    Args:
        named: the LightningModule's named parameters.
        head: the network's classifier prefix.
        cfg: the fine-tuning settings.
        optimizer: the run's optimizer (its groups' initial learning rates and weight decay).

    Returns:
        A plain dictionary.
    """
    backbone = sum(p.numel() for n, p in named if not is_head(n, head))
    groups = [
        {
            "name": g.get("name", f"group {i}"),
            "lr": g.get("initial_lr", g["lr"]),
            "weight_decay": g.get("weight_decay", 0.0),
            "parameters": sum(p.numel() for p in g["params"]),
        }
        for i, g in enumerate(optimizer.param_groups)
    ]
    return {
        "head": head,
        "freeze_backbone_epochs": cfg.freeze_backbone_epochs,
        "frozen_parameters": backbone if cfg.freeze_backbone_epochs else 0,
        "backbone_lr_scale": cfg.backbone_lr_scale,
        "no_weight_decay_norm_bias": cfg.no_weight_decay_norm_bias,
        "param_groups": groups,
    }
