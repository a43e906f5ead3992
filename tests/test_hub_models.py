"""timm's and torchvision's models through the registry: build and train, names, options, weights, the CLI."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import huggingface_hub
import pytest
import safetensors.torch
import timm
import torch
import torchvision
from torch import nn

from imgbench.errors import ArgumentError, CheckpointError
from imgbench.models import classifier_prefix, create_model, pretrained_stats
from imgbench.models.__main__ import main as models_main
from imgbench.paths import REPO_ROOT
from imgbench.run import train

from .conftest import needs_shared, run_cli, train_step

IMAGENET_MEAN = [0.485, 0.456, 0.406]


pytestmark = pytest.mark.usefixtures("seed_and_one_thread")


@pytest.mark.parametrize(
    ("hub", "name", "in_channels", "size"),
    [
        ("timm", "resnet18", 1, 28),
        ("timm", "resnet18", 3, 32),
        ("timm", "efficientnet_b0", 1, 28),
        ("timm", "convnext_atto", 3, 32),
        ("torchvision", "resnet18", 1, 28),
        ("torchvision", "resnet18", 3, 32),
        ("torchvision", "mobilenet_v3_small", 1, 28),
        ("torchvision", "mobilenet_v3_small", 3, 32),
    ],
)
def test_hub_models_build_and_train_one_step(hub, name, in_channels, size):
    model = create_model(hub, name=name, num_classes=10, in_channels=in_channels, image_size=(size, size))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == in_channels  # the first conv takes the data's channels
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(2, in_channels, size, size)
    assert torch.isfinite(torch.tensor(train_step(model, x)))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert model.eval()(x).shape == (2, 10)
    assert pretrained_stats(model) is None  # no weights loaded


def test_model_options_reach_the_model():
    timm_model = create_model("timm", name="resnet18", num_classes=10, drop_rate=0.25)
    assert timm_model.drop_rate == 0.25
    tv_model = create_model("torchvision", name="mobilenet_v3_small", num_classes=10, dropout=0.3)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in tv_model.modules())


@pytest.mark.parametrize("hub", ["timm", "torchvision"])
def test_unknown_name_is_one_line_with_close_matches(hub):
    with pytest.raises(ArgumentError) as e, torch.device("meta"):
        create_model(hub, name="resnt18", num_classes=10)
    msg = str(e.value)
    assert e.value.argument == "name" and "\n" not in msg
    assert f"unknown {hub} model 'resnt18' (did you mean 'resnet18'" in msg and "python -m imgbench.models" in msg


@pytest.mark.parametrize(
    ("hub", "name", "options", "argument"),
    [
        ("timm", "resnet18", {"drop_ratee": 0.1}, "drop_ratee"),
        ("timm", "resnet18", {"drop_path_rate": 1.5}, "drop_path_rate"),
        ("torchvision", "resnet18", {"dropout": 0.1}, "dropout"),  # torchvision's ResNet has no dropout
        ("torchvision", "mobilenet_v3_small", {"dropout": -0.5}, "dropout"),
    ],
)
def test_bad_options_name_the_option(hub, name, options, argument):
    with pytest.raises(ArgumentError) as e, torch.device("meta"):
        create_model(hub, name=name, num_classes=10, **options)
    assert e.value.argument == argument and "\n" not in str(e.value)


def test_timm_weight_tags_are_checked():
    with pytest.raises(ArgumentError, match=r"no weights tag 'nope'.*a1_in1k") as e, torch.device("meta"):
        create_model("timm", name="resnet18.nope")
    assert e.value.argument == "name"


def test_cli_errors_are_one_line_before_any_data(tmp_path):
    empty = {"IMGBENCH_DATA_DIR": str(tmp_path)}  # no data there: the errors come before the data is read
    for args, expected in [
        (["model=timm", "model.name=resnt18"], "did you mean 'resnet18'"),
        (["model=timm"], "model.name has no value"),
        (["model=torchvision", "model.name=resnet18", "+model.drop_ratee=0.1"], "model.drop_ratee"),
    ]:
        proc = run_cli("train.py", *args, "data=mnist", env=empty, timeout=120)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert err.startswith("imgbench: error: ") and "\n" not in err and expected in err, err


# ---------------------------------------------------------------------------- weights


def _same_except_head(model: nn.Module, source: dict[str, torch.Tensor], head: str) -> None:
    """Every tensor but the head's equals the file's; the head has the model's shape and is not the file's."""
    state = model.state_dict()
    for key, value in source.items():
        if key.startswith(f"{head}."):
            assert state[key].shape != value.shape
        else:
            assert torch.equal(state[key], value), key
    assert state[f"{head}.weight"].shape[0] == 10


@pytest.fixture(scope="module")
def timm_resnet18() -> dict[str, torch.Tensor]:
    """A timm resnet18 state_dict with 100 classes (random weights standing in for published ones)."""
    torch.manual_seed(1)
    return timm.create_model("resnet18", num_classes=100).state_dict()


@pytest.mark.parametrize("form", ["safetensors", "pth", "ckpt", "ddp"])
def test_timm_weights_files_load_with_a_new_head(tmp_path, caplog, timm_resnet18, form):
    source = timm_resnet18
    path = tmp_path / f"weights.{form}"
    if form == "safetensors":
        safetensors.torch.save_file(source, str(path))
    elif form == "pth":
        torch.save(source, path)
    elif form == "ckpt":  # an imgbench run's checkpoint: the module's state, the model under `net.`
        torch.save({"state_dict": {f"net.{k}": v for k, v in source.items()}, "imgbench": {}}, path)
    else:  # saved from DistributedDataParallel
        torch.save({f"module.{k}": v for k, v in source.items()}, path)
    with caplog.at_level(logging.INFO, logger="imgbench.models.weights"):
        model = create_model("timm", name="resnet18", num_classes=10, pretrained=str(path))
    _same_except_head(model, source, "fc")
    line = next(r.getMessage() for r in caplog.records if "loaded" in r.getMessage())
    assert "dropped fc.bias (100), fc.weight (100x512); added fc.bias (10), fc.weight (10x512)" in line
    assert classifier_prefix(model) == "fc"
    expected = None if form == "ckpt" else (IMAGENET_MEAN, [0.229, 0.224, 0.225])  # a run's data had its own
    assert pretrained_stats(model) == expected


def test_gray_images_adapt_the_first_conv(tmp_path, timm_resnet18):
    path = tmp_path / "weights.pth"
    torch.save(timm_resnet18, path)
    model = create_model("timm", name="resnet18", num_classes=100, in_channels=1, pretrained=str(path))
    torch.testing.assert_close(model.conv1.weight, timm_resnet18["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.fc.weight, timm_resnet18["fc.weight"])  # the same class count keeps the head
    tv_source = torchvision.models.resnet18(num_classes=100).state_dict()
    torch.save(tv_source, path)
    tv_model = create_model("torchvision", name="resnet18", num_classes=10, in_channels=1, pretrained=str(path))
    torch.testing.assert_close(tv_model.conv1.weight, tv_source["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(tv_model.layer4[1].bn2.running_var, tv_source["layer4.1.bn2.running_var"])


def test_torchvision_weights_load_with_a_new_head(tmp_path, caplog):
    torch.manual_seed(2)
    source = torchvision.models.mobilenet_v3_small().state_dict()
    path = tmp_path / "mobilenet.pth"
    torch.save(source, path)
    with caplog.at_level(logging.INFO, logger="imgbench.models.weights"):
        model = create_model("torchvision", name="mobilenet_v3_small", num_classes=10, pretrained=str(path))
    _same_except_head(model, source, "classifier.3")
    dropped_added = "dropped classifier.3.bias (1000), classifier.3.weight (1000x1024); added classifier.3.bias (10)"
    assert dropped_added in caplog.text
    assert classifier_prefix(model) == "classifier.3"
    assert pretrained_stats(model) == (IMAGENET_MEAN, [0.229, 0.224, 0.225])


def test_weights_of_another_architecture_name_the_keys(tmp_path, timm_resnet18):
    path = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file(timm_resnet18, str(path))
    with pytest.raises(CheckpointError) as e:
        create_model("timm", name="resnet34", num_classes=10, pretrained=str(path))
    msg = str(e.value)
    assert "do not fit timm resnet34" in msg and "missing: layer1.2." in msg and "\n" not in msg
    wrong = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), wrong)
    with pytest.raises(CheckpointError, match=r"do not fit torchvision resnet18 \(missing: conv1.weight.*unexpected"):
        create_model("torchvision", name="resnet18", pretrained=str(wrong))


def test_default_weights_offline_fail_fast_in_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("socket.create_connection", offline)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    start = time.monotonic()
    with pytest.raises(CheckpointError) as e:
        create_model("timm", name="resnet18", num_classes=10, pretrained=True)
    msg = str(e.value)
    assert msg.startswith("could not download timm/resnet18.a1_in1k") and "\n" not in msg
    assert "https://huggingface.co/timm/resnet18.a1_in1k (model.safetensors)" in msg
    assert "model.pretrained=<file>" in msg
    with pytest.raises(CheckpointError, match=r"download https://download\.pytorch\.org/models/resnet18-f37072fd\.pth"):
        create_model("torchvision", name="resnet18", num_classes=10, pretrained=True)
    assert time.monotonic() - start < 30


def test_classifier_prefix_of_every_kind():
    with torch.device("meta"):
        assert classifier_prefix(create_model("timm", name="convnext_atto", num_classes=10)) == "head.fc"
        assert classifier_prefix(create_model("torchvision", name="squeezenet1_1", num_classes=10)) == "classifier.1"
        assert classifier_prefix(create_model("torchvision", name="vit_b_32", num_classes=10)) == "heads.head"
        assert classifier_prefix(create_model("alexnet_tv", num_classes=10)) == "classifier.6"
        assert classifier_prefix(create_model("resnet18", num_classes=10)) == "fc"  # the last Linear


# ---------------------------------------------------------------------------- the listing and a run


def test_models_listing(capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "imgbench.models"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "resnet18 " in proc.stdout and "stem=conv" in proc.stdout and "model=timm model.name=" in proc.stdout
    models_main(["--timm", "convnext_at*"])
    assert capsys.readouterr().out.split() == ["convnext_atto", "convnext_atto_ols", "convnext_atto_rms"]
    models_main(["--torchvision", "mobilenet_v3*"])
    assert capsys.readouterr().out.split() == ["mobilenet_v3_large", "mobilenet_v3_small"]


@needs_shared
def test_fast_dev_run_timm_on_mnist(train_cfg):
    cfg = train_cfg("model=timm", "model.name=resnet18", "+model.drop_rate=0.1", "data=mnist", "debug=fast_dev_run")
    result = train(cfg)
    assert result["status"] == "finished" and 0 <= result["metrics"]["test/acc"] <= 1


def test_default_weights_come_from_the_caches_offline(tmp_path, monkeypatch, timm_resnet18, caplog):
    """pretrained=true reads a file downloaded before (Hugging Face's and torch.hub's caches) without a network."""

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("socket.create_connection", offline)
    snapshot = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    safetensors.torch.save_file(timm_resnet18, str(snapshot / "model.safetensors"))
    (tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with caplog.at_level(logging.INFO, logger="imgbench.models.weights"):
        model = create_model("timm", name="resnet18", num_classes=10, in_channels=1, pretrained=True)
    assert "timm resnet18: loaded timm/resnet18.a1_in1k; conv1.weight adapted from 3 to 1 input channels" in caplog.text
    assert torch.equal(model.layer1[0].conv1.weight, timm_resnet18["layer1.0.conv1.weight"])
    mean, std = pretrained_stats(model)  # gray images: the conv sums RGB's weights, the statistics are averaged
    assert mean == pytest.approx([sum(IMAGENET_MEAN) / 3]) and std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])

    tv_source = torchvision.models.resnet18().state_dict()
    (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
    torch.save(tv_source, tmp_path / "torch" / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    model = create_model("torchvision", name="resnet18", num_classes=10, pretrained=True)
    _same_except_head(model, tv_source, "fc")
