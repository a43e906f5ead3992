"""What the benchmarks rely on: the batched augmentation equals the per-image pipeline given the same random
decisions, the auto precision/layout resolution, the whitening initialisation, the cifar10_fast recipe, and the
retrieval metrics against the benchmark's direct implementation. (The benchmarks themselves are not tests.)"""

from __future__ import annotations

import json
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from imgbench import hardware
from imgbench.callbacks import EMA
from imgbench.data.augment import AugmentConfig, BatchTransform
from imgbench.errors import ConfigError
from imgbench.models import create_model

from .conftest import REPO_ROOT, write_image_folder

# ---------------------------------------------------------------------------- batched == per-image


@pytest.mark.parametrize("mode", ["reflect", "zeros", "edge"])
def test_batched_crop_and_flip_equal_torchvision_per_image(mode):
    """The fast path gives, image by image, what torchvision's per-image transforms give for the same draws."""
    x = torch.randint(0, 256, (24, 3, 12, 10), dtype=torch.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    fast = BatchTransform(mean, std, AugmentConfig(crop_padding=3, pad_mode=mode, flip=True), seed=11)(x, train=True)
    g = torch.Generator().manual_seed(11)  # the transform's draws, in its order: dy, dx, then the flips
    dy = torch.randint(0, 7, (24,), generator=g)
    dx = torch.randint(0, 7, (24,), generator=g)
    flip = torch.rand(24, generator=g) < 0.5
    tv_mode = {"reflect": "reflect", "zeros": "constant", "edge": "edge"}[mode]
    for i in range(24):
        img = TF.to_pil_image(x[i])
        img = TF.crop(TF.pad(img, 3, padding_mode=tv_mode), int(dy[i]), int(dx[i]), 12, 10)
        if flip[i]:
            img = TF.hflip(img)
        want = TF.normalize(TF.to_tensor(img), mean, std)
        torch.testing.assert_close(fast[i], want, atol=1e-5, rtol=1e-5)


def test_flip_only_and_shift_equal_per_image_slices():
    x = torch.randint(0, 256, (16, 1, 9, 9), dtype=torch.uint8)
    t = BatchTransform([0.0], [1.0], AugmentConfig(flip=True), seed=2)
    g = torch.Generator().manual_seed(2)
    flip = torch.rand(16, generator=g) < 0.5
    want = torch.stack([xi.flip(2) if f else xi for xi, f in zip(x, flip)]).float() / 255
    torch.testing.assert_close(t(x, train=True), want)
    shift = BatchTransform([0.0], [1.0], AugmentConfig(shift=0.2, pad_mode="edge"), seed=4)(x, train=True)
    g = torch.Generator().manual_seed(4)
    d = round(0.2 * 9)
    dy, dx = torch.randint(0, 2 * d + 1, (16,), generator=g), torch.randint(0, 2 * d + 1, (16,), generator=g)
    padded = F.pad(x.float(), (d, d, d, d), mode="replicate")
    want = torch.stack([padded[i, :, dy[i] : dy[i] + 9, dx[i] : dx[i] + 9] for i in range(16)]) / 255
    torch.testing.assert_close(shift, want)


def test_normalisation_constants_are_built_once():
    t = BatchTransform([0.5], [0.25])
    x = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    first = t._affine(x.device, 1)
    t(x, train=False)
    assert t._affine(x.device, 1) is first
    torch.testing.assert_close(t(x, train=False), (x.float() / 255 - 0.5) / 0.25)


# ---------------------------------------------------------------------------- precision / channels_last auto


def test_precision_auto_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    assert hardware.resolve_precision("auto", "auto") == "32-true"
    assert hardware.resolve_precision("auto", "cpu") == "32-true"
    assert hardware.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # explicit values are kept
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)  # AMX / AVX512-BF16
    assert hardware.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.resolve_precision("auto", "auto") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. V100
    assert hardware.resolve_precision("auto", "gpu") == "16-mixed"


def test_this_cpu_has_no_native_bf16_flag_mismatch():
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        assert hardware.cpu_has_native_bf16() is False


def test_channels_last_auto(monkeypatch):
    conv = create_model("keras_cnn", num_classes=10, in_channels=1, image_size=28)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert hardware.resolve_channels_last("auto", conv) is True  # no input shape: on for conv nets
    assert hardware.resolve_channels_last("auto", mlp, (1, 2, 2)) is False  # no convolutions: no probe
    assert hardware.resolve_channels_last(False, conv, (1, 28, 28)) is False
    with pytest.raises(ValueError, match="channels_last"):
        hardware.resolve_channels_last("maybe", conv)
    # on a CPU with the input shape, the layout that trained faster in the probe wins
    for faster in (True, False):
        seconds = {False: [1.0], True: [0.5 if faster else 2.0]}
        monkeypatch.setattr(hardware, "probe_channels_last", lambda *a, s=seconds, f=faster, **k: (f, s))
        assert hardware.resolve_channels_last("auto", conv, (1, 28, 28), 128, "cpu") is faster
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.resolve_channels_last("auto", conv, (1, 28, 28), 128, "auto") is True  # GPUs: NHWC


def test_channels_last_probe_times_both_layouts_and_keeps_the_random_state():
    net = create_model("keras_cnn", num_classes=10, in_channels=1, image_size=28)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    faster, seconds = hardware.probe_channels_last(net, (1, 28, 28), batch_size=8)
    assert isinstance(faster, bool) and len(seconds[True]) == len(seconds[False]) >= 1
    assert faster == (min(seconds[True]) < min(seconds[False]))
    assert torch.equal(torch.rand(3), expected)  # the run's random draws are untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the probe trains copies
    assert net.features[0].weight.is_contiguous()  # and leaves the model's layout alone


def test_auto_settings_reach_the_trainer_and_module(train_cfg, tmp_path, monkeypatch):
    from imgbench.build import build_module, build_net, build_trainer
    from imgbench.config import validate

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(hardware, "probe_channels_last", lambda *a, **k: (True, {False: [1.0], True: [0.5]}))
    root = write_image_folder(tmp_path / "imgs", per_class=2, size=(16, 16))
    cfg = train_cfg(
        "data=imagefolder",
        f"data.root={root}",
        "data.val_size=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer=cpu",
        "trainer.precision=auto",
        "module.channels_last=auto",
    )
    validate(cfg)
    from imgbench.build import build_datamodule

    dm = build_datamodule(cfg)
    net = build_net(cfg, dm)
    module = build_module(cfg, net, dm.num_classes, input_shape=dm.image_shape)
    assert module.memory_format == torch.channels_last
    assert str(build_trainer(cfg, has_val=False).precision) == "32-true"
    # the decision is kept per machine and model: later runs reuse it without timing
    assert list(json.loads((tmp_path / "cache" / "channels_last.json").read_text()).values()) == [True]
    monkeypatch.setattr(hardware, "probe_channels_last", lambda *a, **k: (False, {False: [0.5], True: [1.0]}))
    assert build_module(cfg, net, dm.num_classes, dm.image_shape).memory_format == torch.channels_last
    # DDP processes on CPUs take NCHW whatever is on record: each must take the same layout as the others
    ddp = build_module(cfg, net, dm.num_classes, dm.image_shape, processes=2)
    assert ddp.memory_format == torch.contiguous_format
    # a resumed or evaluated run computes in its checkpoint's layout
    saved = build_module(cfg, net, dm.num_classes, dm.image_shape, saved_layout=False)
    assert saved.memory_format == torch.contiguous_format
    # 5% faster is noise, not a reason to leave the default layout
    shape = dm.image_shape
    monkeypatch.setattr(hardware, "probe_channels_last", lambda *a, **k: (True, {False: [1.0], True: [0.95]}))
    assert not hardware.resolve_channels_last("auto", net, shape, cache_file=tmp_path / "new.json")
    bad = train_cfg("module.channels_last=maybe")
    with pytest.raises(ConfigError, match="channels_last"):
        validate(bad)


# ---------------------------------------------------------------------------- whitening


def test_whitening_init_whitens_patches():
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.8, 0.3], [0.0, 0.6, 0.5], [0.0, 0.0, 0.4]])
    base = torch.randn(64, 3, 12, 12)
    images = torch.einsum("ij,njhw->nihw", mix, F.avg_pool2d(base, 3, 1, 1) * 3)  # correlated channels and pixels
    net = create_model("fastnet", num_classes=10, in_channels=3, image_size=12, widths=[8, 8, 8][:1])
    assert not bool(net.whitening_ready)
    net.init_whitening(images, eps=1e-8)
    assert bool(net.whitening_ready)
    out = F.conv2d(images, net.whiten.weight)  # without the bias
    half = out.shape[1] // 2
    assert half == 12
    torch.testing.assert_close(out[:, half:], -out[:, :half])
    flat = out[:, :half].permute(0, 2, 3, 1).reshape(-1, half).double()
    cov = torch.cov(flat.T)
    torch.testing.assert_close(cov, torch.eye(half, dtype=torch.float64), atol=2e-3, rtol=0)
    assert not net.whiten.weight.requires_grad  # frozen; its bias trains
    assert net.whiten.bias.requires_grad


def test_whitening_callback_initialises_once(tmp_path):
    from imgbench.callbacks import PatchWhitening
    from imgbench.data import ImageFolderDataModule

    root = write_image_folder(tmp_path / "imgs", per_class=4, size=(16, 16))
    dm = ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "cache")
    dm.setup()
    net = create_model("fastnet", num_classes=3, in_channels=3, image_size=16, widths=[8])

    class Trainer:
        datamodule = dm

    class Module(nn.Module):
        device = torch.device("cpu")

    module = Module()
    module.net = net
    PatchWhitening(max_images=5).on_fit_start(Trainer(), module)
    first = net.whiten.weight.clone()
    assert bool(net.whitening_ready)
    net.whiten.weight.data.mul_(2)  # a resumed run: the restored weights must stay
    PatchWhitening().on_fit_start(Trainer(), module)
    torch.testing.assert_close(net.whiten.weight, first * 2)
    with pytest.raises(TypeError, match="init_whitening"):
        module.net = nn.Linear(2, 2)
        PatchWhitening().on_fit_start(Trainer(), module)


# ---------------------------------------------------------------------------- cifar10_fast


def test_cifar10_fast_composes_as_specified(train_cfg):
    cfg = train_cfg("experiment=cifar10_fast")
    assert cfg.model._target_ == "imgbench.models.fastnet"
    assert cfg.data.eval_views == "flip" and cfg.data.batch_size == 1024 and cfg.data.val_size == 0
    assert cfg.module.label_smoothing == 0.2 and cfg.module.channels_last == "auto"
    assert cfg.trainer.precision == "auto" and cfg.optimizer.nesterov is True
    assert cfg.scheduler._target_.endswith("OneCycleLR") and cfg.scheduler.total_steps is None
    assert set(cfg.callbacks) == {"patch_whitening", "ema", "last_checkpoint"}


def test_cifar10_fast_fast_dev_run(train_cfg, tmp_path):
    from imgbench.run import train

    root = write_image_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    cfg = train_cfg(
        "experiment=cifar10_fast",
        "data=imagefolder",
        f"data.root={root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "model.widths=[8,16,16]",
        "debug=fast_dev_run",
    )
    result = train(cfg)
    assert result["status"] == "finished" and 0 <= result["metrics"]["test/acc"] <= 1
    assert result["precision"] == hardware.resolve_precision("auto", "auto") and isinstance(
        result["channels_last"], bool
    )


def test_onecycle_total_steps_is_filled(train_cfg, tmp_path):
    from imgbench.build import build_datamodule, build_module, build_net, build_trainer

    root = write_image_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    cfg = train_cfg(
        "data=imagefolder",
        f"data.root={root}",
        "data.val_size=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=4",
        "scheduler=onecycle",
        "trainer.max_epochs=2",
        "callbacks=none",
        "logger=csv",
    )
    dm = build_datamodule(cfg)
    module = build_module(cfg, build_net(cfg, dm), dm.num_classes)
    trainer = build_trainer(cfg, has_val=False)
    trainer.fit(module, datamodule=dm)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == 2 * 6  # 24 images / batch 4, 2 epochs
    assert trainer.global_step == 12


# ---------------------------------------------------------------------------- retrieval vs the direct baseline


def test_retrieval_equals_the_benchmarks_direct_implementation():
    from benchmarks.direct_retrieval import direct_retrieval_metrics
    from benchmarks.sections.retrieval import hash_codes
    from imgbench.metrics.retrieval import retrieval_metrics

    rng = np.random.default_rng(1)
    codes, labels = hash_codes(40 + 700, 48, 7, rng, flip=0.2)
    args = (codes[:40], labels[:40], codes[40:], labels[40:])
    kwargs = {"map_cutoff": 100, "precision_ks": (10, 50, 700), "radius": 3, "knn_k": 6}
    want = direct_retrieval_metrics(*args, **kwargs)
    got = retrieval_metrics(*args, **kwargs, chunk_elements=700 * 7)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # every code equal: the ranking is the database order (all ties), kNN takes the first k items
    same = np.zeros((3, 48), dtype=bool)
    db_labels = rng.integers(0, 3, 300)
    kwargs["precision_ks"] = (10, 50, 300)
    want = direct_retrieval_metrics(same, [0, 1, 2], np.zeros((300, 48), dtype=bool), db_labels, **kwargs)
    got = retrieval_metrics(same, [0, 1, 2], np.zeros((300, 48), dtype=bool), db_labels, **kwargs)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_benchmarks_cli_help():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--quick" in result.stdout


def test_benchmark_report_table():
    from benchmarks.__main__ import report
    from benchmarks.common import Figure, side_by_side
    from benchmarks.sections import Sizes

    fig = side_by_side(Figure("datapath", "x", "fast", "slow", "img/s", target=">= 10x"), lambda: 100.0, lambda: 5.0, 3)
    assert fig.a == [100.0] * 3 and fig.ratio == 20
    info = {
        "cpu": "cpu",
        "cores": 2,
        "cpu_capability": "AVX2",
        "native_bf16": False,
        "gpu": None,
        "torch": "2",
        "python": "3",
        "threads": 1,
        "date": "today",
        "quick": True,
        "load_at_start": 1.0,
        "load_at_end": 1.0,
        "section_seconds": {"datapath": 1.0},
    }
    text = report(info, Sizes.quick(), [fig])
    assert "| datapath | x | fast | slow |" in text and "20.00x" in text
    recipe = Figure("recipe", "cifar10_fast", "python train.py experiment=cifar10_fast", "", "s", a=[90.0], b=[90.0])
    recipe.extra.update(
        command="python train.py experiment=cifar10_fast",
        test_acc=0.8123,
        epochs=2,
        train_size=50000,
        train_seconds=90.0,
        wall_seconds=120.0,
        images_per_sec=1111.0,
        precision="32-true",
        channels_last=False,
    )
    text = report(info, Sizes.quick(), [fig, recipe])
    assert "test accuracy **0.8123** after 2 epoch(s) on 50,000 training images, 1.5 minutes" in text
    assert "| recipe |" not in text  # one run, not a side-by-side row


def test_keep_others_carries_earlier_sections_over_with_their_date(tmp_path):
    """--keep-others: the sections not re-run come back from results.json unchanged, marked with their date."""
    import json

    from benchmarks.__main__ import kept_figures
    from benchmarks.common import Figure

    old = Figure("recipe", "cifar10_fast", "cmd", "", "s", a=[90.0], b=[90.0], note="n", loads=[1.5])
    old.extra.update(test_acc=0.5, command="cmd")
    other = Figure("retrieval", "codes", "ours", "direct", "s", a=[1.0, 2.0, 3.0], b=[40.0, 50.0, 60.0])
    machine = {"date": "2026-01-01T00:00:00", "section_seconds": {"recipe": 600.0, "retrieval": 20.0}}
    machine |= {"cpu": "CPU one", "cpu_capability": "AVX2"}
    figures = [old.as_dict(), other.as_dict()]
    (tmp_path / "results.json").write_text(json.dumps({"machine": machine, "figures": figures}))

    kept, info = kept_figures(tmp_path / "results.json", ["retrieval"])  # retrieval is re-run: only recipe kept
    assert [f.section for f in kept] == ["recipe"]
    back = kept[0]
    assert (back.a, back.b, back.note, back.loads, back.extra["test_acc"]) == ([90.0], [90.0], "n", [1.5], 0.5)
    assert info == {"recipe": {"date": "2026-01-01T00:00:00", "seconds": 600.0, "cpu": "CPU one, AVX2"}}
    assert back.as_dict() | {"measured": None} == old.as_dict() | {"measured": None}
    assert kept_figures(tmp_path / "missing.json", []) == ([], {})
    # kept twice: the second --keep-others run finds recipe's seconds in the first one's kept_sections
    machine = {"date": "2026-02-01T00:00:00", "section_seconds": {"retrieval": 25.0}, "kept_sections": info}
    machine |= {"cpu": "CPU two", "cpu_capability": "AVX512"}
    figures = [kept[0].as_dict(), other.as_dict()]
    (tmp_path / "results.json").write_text(json.dumps({"machine": machine, "figures": figures}))
    again, info = kept_figures(tmp_path / "results.json", ["streaming"])
    assert [f.section for f in again] == ["recipe", "retrieval"]
    assert info == {
        "recipe": {"date": "2026-01-01T00:00:00", "seconds": 600.0, "cpu": "CPU one, AVX2"},  # its own CPU
        "retrieval": {"date": "2026-02-01T00:00:00", "seconds": 25.0, "cpu": "CPU two, AVX512"},
    }


def test_results_are_written_with_numpy_values(tmp_path):
    """A figure whose extras hold numpy values (a met target computed from numpy) is written as plain JSON."""
    import json

    from benchmarks.__main__ import write
    from benchmarks.common import Figure
    from benchmarks.sections import Sizes

    fig = Figure("retrieval", "codes", "ours", "direct", "s", a=[1.0], b=[50.0], loads=[1.0])
    fig.extra.update(met=np.float64(50.0) >= 20, max_abs_difference=np.float64(1e-16), per=np.arange(2))
    info = {"cpu": "c", "cores": 2, "cpu_capability": "AVX2", "native_bf16": False, "gpu": None, "torch": "2"}
    info |= {"python": "3", "threads": 1, "date": "d", "quick": True, "load_at_start": 1.0, "load_at_end": 1.0}
    write(tmp_path, info | {"section_seconds": {"retrieval": 1.0}}, Sizes.quick(), [fig])
    back = json.loads((tmp_path / "results.json").read_text())["figures"][0]
    assert back["met"] is True and back["max_abs_difference"] == 1e-16 and back["per"] == [0, 1]
    assert "| retrieval | codes |" in (tmp_path / "results.md").read_text()


def test_the_end_to_end_baseline_uses_the_same_cnn():
    """The Lightning-template side of the end-to-end figure builds keras_cnn from stock torch.nn layers: the same
    network (same parameters give the same outputs), only imgbench's faster implementation differs."""
    from benchmarks.sections.datapath import template_cnn

    stock = template_cnn().eval()
    ours = create_model("keras_cnn", num_classes=10, in_channels=1, image_size=28).eval()
    ours.load_state_dict(dict(zip(ours.state_dict(), stock.state_dict().values())))
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(ours(x), stock(x))


# ---------------------------------------------------------------------------- the streaming section


def test_streaming_section_generates_photo_sized_jpegs(tmp_path):
    """The generated folder: balanced class folders, sides in range, files of a photo's size (not noise's)."""
    from PIL import Image

    from benchmarks.sections.streaming import subset_source, write_source

    info = write_source(tmp_path / "src", train=30, val=10)
    files = sorted((tmp_path / "src" / "train").glob("*/*.jpg"))
    assert (info.train, info.val, len(files)) == (30, 10, 30)
    assert sorted({f.parent.name for f in files}) == [f"c{k}" for k in range(10)]
    for f in files[:5]:
        with Image.open(f) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and all(200 <= side <= 500 for side in im.size)
    assert 15 < info.mean_kb < 60 and 200 <= info.mean_side <= 500
    # the same seed writes the same images
    again = write_source(tmp_path / "again", train=30, val=10)
    assert (tmp_path / "again/train/c3/000003.jpg").read_bytes() == (tmp_path / "src/train/c3/000003.jpg").read_bytes()
    assert again.mean_kb == info.mean_kb
    sub = subset_source(tmp_path / "src", tmp_path / "sub", 20, 10)
    assert len(list((sub / "train").glob("*/*.jpg"))) == 20 and len(list((sub / "val").glob("*/*.jpg"))) == 10


def test_streaming_section_measures_prepare_and_the_loaders(tmp_path):
    """prepare, the streaming loader, ImageFolder + DataLoader and decoding alone, on 40 small JPEGs."""
    from benchmarks.sections.streaming import (
        loader_figures,
        prepare_figure,
        streaming_module,
        streaming_rate,
        write_source,
    )

    info = write_source(tmp_path / "src", train=40, val=10, sides=(40, 80))
    shards = tmp_path / "shards"
    prep = prepare_figure(info, shards, repeats=1)
    assert (prep.section, prep.unit, prep.target) == ("streaming", "img/s", "")
    assert prep.a_label.startswith("prepare") and prep.b_label.startswith("read + decode_jpeg")
    assert len(prep.a) == len(prep.b) == len(prep.loads) // 2 == 1 and prep.a[0] > 0 and prep.b[0] > 0
    assert "40 training + 10 validation JPEGs" in prep.note
    meta = json.loads((shards / "imgbench.json").read_text())
    assert meta["splits"] == {"train": 40, "test": 10}  # val/ without test/ is the test split

    template, decode = loader_figures(info, shards, repeats=1, image_size=32, batch_size=8)
    assert [f.target for f in (template, decode)] == [">= 1.5x", ">= 0.8x"]
    assert template.a_label == decode.a_label == "StreamingDataModule (2 workers)"
    assert template.b_label == "ImageFolder + DataLoader (2 workers)"
    assert decode.b_label == "decode_jpeg alone (2 processes)"
    for f in (template, decode):
        assert f.unit == "img/s" and f.a[0] > 0 and f.b[0] > 0 and f.ratio > 0
        assert f.extra["met"] == (f.ratio >= float(f.target.split()[1].rstrip("x")))
    profile = decode.extra["per_image_ms"]
    assert set(profile) == {"decode", "resized_crop", "collate", "flip_normalise", "flip_normalise_kernel"}
    assert min(profile.values()) >= 0 and profile["decode"] > 0 and profile["flip_normalise"] > 0
    # an epoch that does not see every training image once is refused, not timed
    with pytest.raises(RuntimeError, match="yielded 40 images"):
        streaming_rate(streaming_module(shards, 32, 8), expected=41)


def test_streaming_section_peak_memory_sums_the_process_tree():
    """The memory figure's measurement: the peak of the summed RSS of a process and its children."""
    from benchmarks.sections.streaming import peak_tree_memory

    code = (
        "import os, time\n"
        "a = b'x' * (60 << 20)\n"  # 60 MB in the parent, shared with the child after the fork
        "if os.fork() == 0:\n"
        "    b = b'y' * (80 << 20)\n"  # and 80 MB of the child's own
        "    time.sleep(1.0)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    mem = peak_tree_memory([sys.executable, "-c", code], interval=0.02)
    assert mem.returncode == 0 and mem.peak_processes == 2
    assert mem.peak_rss_mb > 60 + 60 + 80  # the shared 60 MB counts in both resident sets
    assert 60 + 80 < mem.peak_pss_mb < mem.peak_rss_mb  # PSS counts it once
    assert mem.peak_anon_mb > 60 + 60 + 80  # all of it anonymous memory
    failed = peak_tree_memory([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    assert failed.returncode == 3 and "boom" in failed.output


def test_streaming_section_memory_figure_runs_train_py(tmp_path):
    """Two train.py runs (N and 10N images) through the memory figure: peaks in MB, the ratio and its target."""
    from benchmarks.sections.streaming import memory_figure, write_source

    info = write_source(tmp_path / "src", train=40, val=10, sides=(40, 60))
    fig = memory_figure(info, tmp_path, n=4, repeats=1, image_size=32)
    assert (fig.unit, fig.target, fig.a_label, fig.b_label) == ("MB", "<= 1.2", "40 images", "4 images")
    assert fig.a[0] > 100 and fig.b[0] > 100 and fig.ratio == fig.a[0] / fig.b[0]
    assert fig.extra["met"] == (fig.ratio <= 1.2) and fig.extra["processes"] >= 3  # main + 2 loader workers
    assert 0 < fig.extra["a_pss_mb"][0] < fig.a[0] and 0 < fig.extra["a_anon_mb"][0] < fig.a[0]
    assert "summed RssAnon (no mapped files)" in fig.note
    assert sorted(p.name for p in tmp_path.glob("shards-*")) == ["shards-4", "shards-40"]


def test_streaming_section_is_registered_with_its_sizes():
    from benchmarks.__main__ import report
    from benchmarks.common import Figure
    from benchmarks.sections import SECTIONS, Sizes, streaming

    assert SECTIONS["streaming"] is streaming.run
    assert list(SECTIONS).index("streaming") == list(SECTIONS).index("recipe") - 1
    quick, default = Sizes.quick(), Sizes()
    assert quick.streaming_images < default.streaming_images
    assert 10 * default.streaming_memory_images <= default.streaming_images  # 10N from the generated folder
    fig = Figure("streaming", "peak memory", "3,000 images", "300 images", "MB", a=[2100.4], b=[2000.0])
    info = {"cpu": "c", "cores": 2, "cpu_capability": "AVX2", "native_bf16": False, "gpu": None, "torch": "2"}
    info |= {"python": "3", "threads": 1, "date": "d", "quick": True, "load_at_start": 1.0, "load_at_end": 1.0}
    text = report(info | {"section_seconds": {"streaming": 1.0}}, quick, [fig])
    assert "| 2,100 MB | 2,000 MB | 1.05x |" in text


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _fit_tiny(epochs: int, ema: EMA, tmp_path) -> tuple[dict, dict, dict]:
    """Train a tiny model with ``ema``; the initial, final and checkpointed weights."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    module = _Tiny()
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[ema],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=16))
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    saved = torch.load(tmp_path / "x.ckpt", weights_only=True)["state_dict"]
    return initial, module.state_dict(), saved


def test_ema_starts_at_a_fraction_of_the_run(tmp_path):
    ema = EMA(decay=0.5, start_fraction=0.5)
    _, final, saved = _fit_tiny(4, ema, tmp_path)  # 4 epochs of 4 steps
    assert ema.update_starting_at_step == 8 and int(ema._average_model.n_averaged) == 8  # the second half's steps
    assert torch.equal(final["net.weight"], saved["net.weight"])  # the average: used at the end and saved
    with pytest.raises(ValueError, match="start_fraction"):
        EMA(start_fraction=1.5)


def test_ema_that_has_not_started_keeps_the_trained_weights(tmp_path):
    """Lightning's callback would hand back (and save) its empty average: the initial weights."""
    ema = EMA(decay=0.5, update_starting_at_step=100)
    initial, final, saved = _fit_tiny(1, ema, tmp_path)
    assert not ema.started()
    assert not torch.equal(final["net.weight"], initial["net.weight"])
    assert torch.equal(saved["net.weight"], final["net.weight"])


# ---------------------------------------------------------------------------- the overhead section's timm figure


def test_overhead_timm_case_composes_train_py_and_the_plain_timm_model(tmp_path):
    """The timm figure: model=timm model.name=resnet18 through train.py's config, CIFAR-sized batches of 32, and a
    plain loop whose network is timm.create_model's resnet18, the same architecture as imgbench builds."""
    from benchmarks.sections import Sizes
    from benchmarks.sections.overhead import cases, timm_resnet18

    sizes = Sizes.quick()
    case = next(c for c in cases(sizes) if c.name == "timm resnet18, CIFAR-sized")
    assert (case.target, case.limit, case.plain_net) == ("<= 1.05x the plain loop's time", 1.05, timm_resnet18)
    assert {"model=timm", "model.name=resnet18", "data=cifar10_jpeg", "data.batch_size=32"} <= set(case.overrides)
    assert f"data.train_size={32 * sizes.timm_batches}" in case.overrides
    assert case.note.startswith(f"{sizes.timm_batches} batches of 32 (32x32 RGB, crop+flip), Adam")
    # the existing figures keep their names, targets and notes
    assert [c.name for c in cases(sizes)][:2] == ["keras_cnn, MNIST", "resnet18, CIFAR-sized (cifar10_jpeg)"]
    assert cases(sizes)[1].note == f"{sizes.resnet_batches} batches of 32 (32x32 RGB, crop+flip), Adam"

    class Data:
        num_classes = 10

    plain = timm_resnet18(None, Data())
    ours = create_model("timm", name="resnet18", num_classes=10, in_channels=3, image_size=32)
    assert type(plain) is type(ours)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_overhead_section_measures_the_timm_figure(tmp_path, monkeypatch):
    """One repetition of the timm figure on a small image folder: both sides time an epoch, the ratio is judged."""
    from benchmarks.sections import Sizes, overhead
    from benchmarks.sections.overhead import cases, measure

    monkeypatch.setattr(overhead, "channels_last_choice", lambda overrides: False)  # no layout probe: seconds saved

    root = write_image_folder(tmp_path / "imgs", per_class=11, size=(32, 32))  # 33 images: one batch of 32
    case = next(c for c in cases(Sizes.quick()) if c.name.startswith("timm"))
    data = ["data=imagefolder", f"data.root={root}", f"paths.cache_dir={tmp_path / 'cache'}"]
    overrides = [o for o in case.overrides if not o.startswith(("data=", "data.train_size"))] + data
    fig = measure(case._replace(overrides=[*overrides, "data.train_size=32"]), repeats=1)
    assert (fig.section, fig.name, fig.a_label, fig.b_label, fig.unit) == (
        "overhead",
        "timm resnet18, CIFAR-sized",
        "imgbench",
        "plain loop",
        "s",
    )
    assert len(fig.a) == len(fig.b) == 1 and fig.a[0] > 0 and fig.b[0] > 0 and len(fig.loads) == 2
    assert fig.extra["overhead"] == fig.a_median / fig.b_median
    assert fig.extra["met"] == (fig.extra["overhead"] <= 1.05)
    assert "channels_last=False (auto's choice here) on both sides" in fig.note
    assert "timm.create_model('resnet18', num_classes=10)" in fig.note


def test_overhead_lenet5_cases_are_study_d_at_batch_4_and_128():
    """Study D's recipe as its experiment composes it, one epoch without validation or tests, at its batch of 4 (the
    1.3x target) and at 128; the note names the CPU."""
    from benchmarks.common import compose
    from benchmarks.sections import Sizes
    from benchmarks.sections.overhead import cases

    sizes = Sizes.quick()
    by_name = {c.name: c for c in cases(sizes)}
    small = by_name["lenet5 at batch 4, CIFAR-sized (study D)"]
    large = by_name["lenet5 at batch 128, CIFAR-sized (study D)"]
    assert (small.limit, small.target) == (1.30, "<= 1.30x the plain loop's time") and large.limit == 1.10
    cases_ = ((small, 4, sizes.lenet_batch4_images, 20), (large, 128, sizes.lenet_batch128_images, 1))
    for case, batch, images, inner_steps in cases_:
        cfg = compose([*case.overrides, "trainer.max_epochs=1", "test=false", "logger=tensorboard"])  # as measured
        assert cfg.model._target_ == "imgbench.models.lenet5" and cfg.data.name == "cifar10-jpeg"
        assert cfg.module.inner_steps == inner_steps and f"module.inner_steps={inner_steps}" in case.note
        assert (cfg.data.batch_size, cfg.data.train_size, cfg.data.val_size) == (batch, images, 0)
        assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.001, 0.9, 0.0)
        assert not AugmentConfig(**cfg.data.augment).active and list(cfg.test_epochs) == []
        assert f"CPU: {hardware.cpu_name()}" in case.note and f"batch {batch}," in case.note


# ---------------------------------------------------------------------------- the augmentation section


def test_augmentation_section_is_registered_with_its_sizes():
    from benchmarks.sections import SECTIONS, Sizes, augmentation
    from benchmarks.sections.augmentation import AUGMENTATIONS, SHAPES

    assert SECTIONS["augmentation"] is augmentation.run
    assert list(SECTIONS).index("augmentation") == list(SECTIONS).index("datapath") + 1
    assert 0 < Sizes.quick().augment_seconds < Sizes().augment_seconds
    assert [s[:3] for s in SHAPES] == [("CIFAR", 128, 32), ("ImageNet", 64, 224)]
    names = [name for name, _ in AUGMENTATIONS]
    assert names == [
        "crop 4 + flip",
        "trivialaugment",
        "randaugment (2 ops, magnitude 9)",
        "random erasing (p 0.25)",
        "mixup (alpha 0.2)",
        "cutmix (alpha 1.0)",
        "PCA lighting (0.1)",
    ]
    # every augmentation switches on what its name says (AugmentConfig accepts its fields)
    configs = [AugmentConfig(**augment) for _, augment in AUGMENTATIONS]
    assert all(c.active for c in configs) and [c.mixing for c in configs] == [False] * 4 + [True, True, False]


def test_augmentation_batch_steps_transform_as_the_data_path_does():
    """Side B normalises alone; side A augments too, and Mixup and CutMix return soft targets after .mix."""
    from benchmarks.sections.augmentation import AUGMENTATIONS, MEAN, STD, batch_step

    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 5, (16,))
    plain = batch_step({}, 5)(x, y)
    torch.testing.assert_close(plain, BatchTransform(MEAN, STD)(x, train=False))
    for name, augment in AUGMENTATIONS:
        out = batch_step(augment, 5)(x, y)
        if AugmentConfig(**augment).mixing:
            images, soft = out
            assert soft.shape == (16, 5) and torch.allclose(soft.sum(1), torch.ones(16)), name
        else:
            images = out
        assert images.shape == x.shape and images.dtype == torch.float32, name
        assert not torch.equal(images, plain), name  # the augmentation changed the batch


def test_augmentation_section_measures_ms_per_batch():
    """Every augmentation at a tiny size: ms per batch of both sides, labelled, no target."""
    from benchmarks.sections.augmentation import AUGMENTATIONS, measure

    for name, augment in AUGMENTATIONS:
        fig = measure(name, augment, ("tiny", 4, 16, 10), seconds=0.005, repeats=2)
        assert (fig.section, fig.unit, fig.target, fig.b_label) == ("augmentation", "ms", "", "normalise")
        assert fig.name == f"tiny (batch 4, 3x16x16): {name}, ms per batch"
        assert fig.a_label == f"{name} + normalise"
        assert len(fig.a) == len(fig.b) == 2 and min(fig.a + fig.b) > 0 and len(fig.loads) == 4
        assert fig.ratio == fig.a_median / fig.b_median and "met" not in fig.extra
        assert "batch 4 of 3x16x16 uint8" in fig.note and "torch thread(s)" in fig.note
        assert ("then .mix" in fig.note) == ("alpha" in name)
        assert fig.note.endswith("malloc's defaults")  # this process: glibc as it started


def test_augmentation_section_runs_in_a_child_with_malloc_reusing_memory():
    """run(): every augmentation and shape measured in a spawned process started with MALLOC_ENV, which this
    process's environment gets back as it was."""
    import os

    from benchmarks.sections import Sizes, augmentation

    before = {k: os.environ.get(k) for k in augmentation.MALLOC_ENV}
    sizes = Sizes.quick()
    sizes.augment_seconds, sizes.repeats = 0.002, 1
    figures = augmentation.run(sizes, shapes=(("tiny", 4, 16, 10), ("small", 2, 24, 100)))
    assert [f.name.split(":")[0] for f in figures] == ["tiny (batch 4, 3x16x16)"] * 7 + ["small (batch 2, 3x24x24)"] * 7
    assert all(f.section == "augmentation" and f.a[0] > 0 and f.b[0] > 0 for f in figures)
    assert all("glibc malloc keeps freed memory for reuse" in f.note for f in figures)
    assert {k: os.environ.get(k) for k in augmentation.MALLOC_ENV} == before
