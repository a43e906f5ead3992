"""Fine-tuning as config: a frozen backbone, a smaller backbone learning rate, no weight decay on norms and biases,
warmup + cosine; what was done is written to metrics.json."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from lightning import seed_everything

from imgbench.build import build_datamodule, build_net
from imgbench.config import validate
from imgbench.errors import ConfigError
from imgbench.modules import ImageClassifier
from imgbench.modules.finetune import FinetuneConfig, is_head, parameter_groups
from imgbench.modules.schedules import warmup_cosine
from imgbench.run import train

from .conftest import compose_cfg, needs_shared

TINY = [
    "data.train_size=64",
    "test=false",  # the 10,000 test images would be most of the time
    "data.val_size=64",
    "data.batch_size=32",
    "data.eval_batch_size=500",
    "model=resnet18",
    "optimizer=sgd",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.prediction_grid",
    "~callbacks.metric_curves",
    "~callbacks.confusion_matrix",
    "module.channels_last=false",
]


def _backbone_and_head(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    net = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    head = {k: v for k, v in net.items() if k.startswith("fc.")}
    backbone = {
        k: v for k, v in net.items() if not k.startswith("fc.") and v.is_floating_point() and "running" not in k
    }
    return backbone, head


@needs_shared
def test_frozen_backbone_is_unchanged_while_frozen_and_trains_after(tmp_path):
    args = [
        *TINY,
        "module.freeze_backbone_epochs=1",
        "module.backbone_lr_scale=0.1",
        "module.no_weight_decay_norm_bias=true",
    ]
    cfg = compose_cfg([*args, "trainer.max_epochs=1"], output_dir=tmp_path / "one")
    seed_everything(cfg.seed, workers=True, verbose=False)
    initial = build_net(cfg, build_datamodule(cfg)).state_dict()
    record = train(cfg)
    after_one = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    backbone, head = _backbone_and_head(after_one)
    assert all(torch.equal(v, initial[k]) for k, v in backbone.items())  # frozen: not one weight moved
    assert not all(torch.equal(v, initial[k]) for k, v in head.items())  # the head trained
    finetune = record["finetune"]
    assert finetune["head"] == "fc" and finetune["freeze_backbone_epochs"] == 1
    frozen = {
        k: v for k, v in initial.items() if not k.startswith("fc.") and v.is_floating_point() and "running" not in k
    }
    assert finetune["frozen_parameters"] == sum(v.numel() for v in frozen.values())
    groups = {g["name"]: g for g in finetune["param_groups"]}
    assert groups["backbone"]["lr"] == pytest.approx(0.1 * groups["head"]["lr"])
    assert groups["backbone no decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] > 0
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["finetune"] == finetune

    cfg = compose_cfg([*args, "trainer.max_epochs=2"], output_dir=tmp_path / "two")
    train(cfg)
    after_two = torch.load(tmp_path / "two" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    backbone_two, _ = _backbone_and_head(after_two)
    assert not any(torch.equal(v, initial[k]) for k, v in backbone_two.items() if v.ndim == 4)  # thawed: it trains


def test_parameter_groups_split_head_backbone_and_decay():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    named = [(f"net.{k}", p) for k, p in net.named_parameters()]
    cfg = FinetuneConfig(backbone_lr_scale=0.5, no_weight_decay_norm_bias=True)
    groups = {g["name"]: g for g in parameter_groups(named, "3", cfg, lr=0.2, weight_decay=1e-4)}
    assert set(groups) == {"backbone", "backbone no decay", "head", "head no decay"}
    assert groups["backbone"]["params"] == [net[0].weight] and groups["backbone"]["lr"] == 0.1
    assert groups["backbone no decay"]["params"] == [net[0].bias, net[1].weight, net[1].bias]
    assert groups["head"]["params"] == [net[3].weight] and groups["head"]["lr"] == 0.2
    assert groups["head no decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 1e-4
    assert is_head("extra.weight", "3") and not is_head("net.30.weight", "3")  # prefixes match whole names


def test_warmup_then_cosine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, max_epochs=10, warmup_epochs=2, start_factor=0.1, min_factor=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.55) and lrs[20] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 80)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[20:])) and lrs[-1] < 0.001


def test_bad_finetune_values_are_one_line(tmp_path):
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"module\.freeze_backbone_epochs must be >= 0"):
        ImageClassifier(net, 2, torch.optim.SGD, freeze_backbone_epochs=-1)
    with pytest.raises(ConfigError, match=r"module\.backbone_lr_scale must be a number"):
        ImageClassifier(net, 2, torch.optim.SGD, backbone_lr_scale="low")
    cfg = compose_cfg(["scheduler=warmup_cosine", "scheduler.warmup_epochs=-1"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"scheduler\.warmup_epochs"):
        validate(cfg)
