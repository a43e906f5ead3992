"""A current recipe end to end: TrivialAugment, mixup/cutmix, random erasing, label smoothing and warmup + cosine
resume exactly after a kill; experiment=cifar10_modern composes and runs."""

from __future__ import annotations

import signal

from omegaconf import OmegaConf

from imgbench.config import validate
from imgbench.run import train

from .conftest import compose_cfg, needs_shared
from .test_reliability import _run_until, assert_same_run

# 10 steps an epoch, 2 epochs; every new augmentation on, drawing from the checkpointed generators
MODERN = [
    "trainer.max_epochs=2",
    "data.train_size=320",
    "data.val_size=100",
    "data.batch_size=32",
    "data.eval_batch_size=2000",
    "data.augment.auto=trivialaugment",
    "data.augment.mixup_alpha=0.2",
    "data.augment.cutmix_alpha=1.0",
    "data.augment.erase_prob=0.25",
    "module.label_smoothing=0.1",
    "scheduler=warmup_cosine",
    "scheduler.warmup_epochs=1",
    "callbacks.last_checkpoint.every_n_train_steps=3",
    "test=false",
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "module.channels_last=false",
]


@needs_shared
def test_a_killed_run_with_the_modern_augmentations_resumes_exactly(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    rc, out = _run_until([*MODERN, f"hydra.run.dir={ref_dir}"], ref_dir, None)
    assert rc == 0, out[-3000:]
    rc, out = _run_until([*MODERN, f"hydra.run.dir={run_dir}"], run_dir, 4)  # mid-epoch
    assert rc == -signal.SIGKILL, out[-3000:]
    rc, out = _run_until([f"resume={run_dir}"], run_dir, None)
    assert rc == 0, out[-3000:]
    assert_same_run(ref_dir, run_dir, steps=20)


def test_cifar10_modern_composes_the_recipe(tmp_path):
    cfg = compose_cfg(["experiment=cifar10_modern"], output_dir=tmp_path)
    validate(cfg)
    aug = cfg.data.augment
    assert (aug.auto, aug.cutmix_alpha, aug.mixup_alpha, aug.erase_prob) == ("trivialaugment", 1.0, 0.2, 0.1)
    assert cfg.module.label_smoothing == 0.1 and cfg.module.no_weight_decay_norm_bias is True
    assert cfg.scheduler._target_.endswith("warmup_cosine") and cfg.optimizer.nesterov is True
    assert cfg.trainer.max_epochs == 100 and cfg.model.shortcut == "projection"


def test_cifar10_modern_fast_dev_run(tmp_path, cifar_dir):
    overrides = ["experiment=cifar10_modern", f"paths.data_dir={cifar_dir}", "data.val_size=20", "debug=fast_dev_run"]
    cfg = compose_cfg([*overrides, "data.batch_size=16", "logger=csv"], output_dir=tmp_path / "run")
    result = train(cfg)
    assert result["status"] == "finished" and result["finetune"]["no_weight_decay_norm_bias"] is True
    assert OmegaConf.select(cfg, "recipe.auto_augment") == "trivialaugment"
