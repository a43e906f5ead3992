"""export.py: ONNX and TorchScript files that take [0, 1] images and give the run's own logits, and model.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from imgbench.checkpoint import read_checkpoint
from imgbench.compose import check_job
from imgbench.data import BatchTransform
from imgbench.data.augment import center_crop
from imgbench.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from imgbench.errors import ConfigError
from imgbench.export import ParityError, export, write_onnx
from imgbench.models import NormalizedClassifier
from imgbench.run import train
from imgbench.trained import datamodule_state, load_trained

from .conftest import HAS_SHARED, SHARED_DATA, compose_cfg, needs_shared, run_cli, write_image_folder

FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # the bound on the largest absolute logit difference


# ---------------------------------------------------------------------------- the normalisation inside the model


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ([0.1275], [0.3044]),  # MNIST's own statistics (normalize=dataset)
        (list(IMAGENET_MEAN), list(IMAGENET_STD)),
        ([0.0] * 3, [1.0] * 3),  # unit
        ([0.0], [1 / 255]),  # none: 0..255
    ],
)
def test_the_model_normalises_as_the_training_pipeline(mean, std):
    """(x - mean) / std on x = pixels / 255 equals the batch transform's uint8 normalisation within 1e-6 (relative
    for the 0..255 values of normalize=none)."""
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, len(mean), 16, 16)
    expected = BatchTransform(mean, std).normalize(pixels)
    got = NormalizedClassifier(nn.Identity(), mean, std)(pixels.to(torch.float32) / 255)
    assert got.dtype == torch.float32
    assert ((got - expected).abs() <= 1e-6 * expected.abs().clamp_min(1)).all()


def test_the_model_refuses_statistics_that_cannot_normalise():
    with pytest.raises(ValueError, match="std > 0"):
        NormalizedClassifier(nn.Identity(), [0.5], [0.0])
    with pytest.raises(ValueError, match="one value per channel"):
        NormalizedClassifier(nn.Identity(), [0.5, 0.5], [0.2])


# ---------------------------------------------------------------------------- two tiny runs, exported once each


def _train(run_dir: Path, *overrides: str) -> Path:
    cfg = compose_cfg(
        [*overrides, "trainer.max_epochs=1", "logger=csv", "callbacks=last_checkpoint"], output_dir=run_dir
    )
    train(cfg)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name)``: a trained run directory, trained on first use.

    ``mnist``: the default Keras CNN on 300 MNIST images. ``folder``: ResNet-18 (BatchNorm) on a generated RGB image
    folder of 20x20 images, trained and evaluated on 16x16 crops (the export takes the centre crop).
    """
    root = tmp_path_factory.mktemp("export_runs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            if name == "mnist":
                if not HAS_SHARED:
                    pytest.skip("needs ../shared/datasets (IMGBENCH_DATA_DIR)")
                made[name] = _train(root / name, "data.train_size=300", "data.val_size=100")
            else:
                images = write_image_folder(root / "images", size=(20, 20), per_class=4)
                made[name] = _train(
                    root / name,
                    "data=imagefolder",
                    f"data.root={images}",
                    "data.crop_size=16",
                    "data.val_size=0",
                    "data.batch_size=4",
                    "model=resnet18",
                    f"paths.cache_dir={root / 'cache'}",
                )
        return made[name]

    return get


def _export_cfg(run_dir: Path, out: Path, *overrides: str):
    args = [f"ckpt_path={run_dir}", f"paths.cache_dir={run_dir.parent / 'cache'}", *overrides]
    return compose_cfg(args, output_dir=out, config_name="export")


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    """``exports(run, format)``: the export's directory and result, exported once per run and format."""
    done: dict[tuple[str, str], tuple[Path, dict]] = {}

    def get(name: str, fmt: str) -> tuple[Path, dict]:
        if (name, fmt) not in done:
            out = tmp_path_factory.mktemp(f"export_{name}_{fmt}")
            done[name, fmt] = out, export(_export_cfg(runs(name), out, f"format={fmt}"))
        return done[name, fmt]

    return get


def _stored_images(name: str) -> torch.Tensor:
    """Five images as the run's data stores them: MNIST's first test images, or random 20x20 RGB images."""
    if name == "mnist":
        return torch.from_numpy(np.load(SHARED_DATA / "mnist-test.npz")["images"][:5]).unsqueeze(1)
    return torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _pipeline(run_dir: Path, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's logits for uint8 ``images`` (its evaluation transform, then its network) and the exported model's
    input for them: the evaluation crop as float32 in [0, 1]."""
    run = load_trained(_export_cfg(run_dir, run_dir.parent / "unused"))
    dm = run.datamodule
    with torch.no_grad():
        logits = run.module.net(dm.transform(images, train=False))
    crops = center_crop(images, dm.crop_size) if dm.crop_size else images
    return logits, crops.to(torch.float32) / 255


def _run_exported(path: Path, x: torch.Tensor) -> torch.Tensor:
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
    with torch.no_grad():
        return torch.jit.load(str(path))(x)


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["mnist", "folder"])
def test_the_exported_file_gives_the_runs_logits_for_any_batch_size(exports, runs, name, fmt):
    """Run by onnxruntime / torch.jit.load on batches of 1 and 5, against the run's own pipeline on the same images."""
    out, result = exports(name, fmt)
    path = out / FILES[fmt]
    assert path.is_file() and not list(out.glob(".*.tmp"))
    expected, x = _pipeline(runs(name), _stored_images(name))
    diffs = [(_run_exported(path, x[:n]) - expected[:n]).abs().max().item() for n in (1, 5)]
    parity = result["parity"]  # the export's own check, on the run's test images
    print(f"{name} {fmt}: largest |logit difference| batches 1, 5: {diffs[0]:.3g}, {diffs[1]:.3g}; export's own check "
          f"({parity['source']}): {parity['max_abs_diff']:.3g}")  # fmt: skip
    assert max(diffs) <= TOLERANCE
    assert _run_exported(path, x).argmax(1).tolist() == expected.argmax(1).tolist()
    assert parity["passed"] and parity["max_abs_diff"] <= TOLERANCE and parity["batch_sizes"][0] == 1
    assert parity["top1_agreement"] == 1.0


@pytest.mark.parametrize("name", ["mnist", "folder"])
def test_model_json_describes_input_classes_normalisation_and_source(exports, runs, name):
    out, result = exports(name, "onnx")
    meta = json.loads((out / "model.json").read_text())
    run_dir = runs(name)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    run = load_trained(_export_cfg(run_dir, out))
    state = datamodule_state(read_checkpoint(ckpt_path), run.datamodule)
    classes = ["cat", "dog", "fox"] if name == "folder" else [str(i) for i in range(10)]
    assert meta["format"] == "onnx" and meta["file"] == "model.onnx" and meta["opset"] == 18
    assert [c["name"] for c in meta["classes"]] == classes
    assert [c["index"] for c in meta["classes"]] == list(range(len(classes)))
    assert meta["input"]["shape"] == (["N", 3, 16, 16] if name == "folder" else ["N", 1, 28, 28])
    assert meta["input"]["dtype"] == "float32" and meta["input"]["range"] == [0.0, 1.0]
    assert meta["output"]["shape"] == ["N", len(classes)] and "softmax" in meta["output"]["meaning"]
    assert meta["normalization"]["mean"] == state["mean"] and meta["normalization"]["std"] == state["std"]
    run_metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert meta["source"] == {
        "checkpoint": str(ckpt_path.resolve()),
        "run_dir": str(run_dir.resolve()),
        "model": "resnet18" if name == "folder" else "keras_cnn",
        "module": "ImageClassifier",
        "data": "imagefolder" if name == "folder" else "mnist",
        "seed": 42,
        "test_metrics": run_metrics,
    }
    assert meta["preprocessing"]["center_crop"] == ([16, 16] if name == "folder" else None)
    assert meta["preprocessing"]["stored_size"] == ([20, 20] if name == "folder" else [28, 28])
    assert meta["parity"] == result["parity"] and meta["versions"]["torch"] == torch.__version__
    recorded = json.loads((out / "metrics.json").read_text())
    assert (
        recorded["status"] == "finished"
        and recorded["metrics"]["export/max_abs_diff"] == meta["parity"]["max_abs_diff"]
    )


@needs_shared
def test_onnx_input_has_a_free_batch_axis(exports):
    import onnx

    out, _ = exports("mnist", "onnx")
    (graph_input,) = onnx.load(str(out / "model.onnx")).graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]


def _refuse_dynamo(monkeypatch, also_tracing: bool = False) -> None:
    """torch.onnx.export fails for the torch.export-based exporter (and, with ``also_tracing``, for both)."""
    original = torch.onnx.export

    def fake(*args, dynamo: bool = True, **kwargs):
        if dynamo or also_tracing:
            raise RuntimeError("cannot export this model\nsecond line")
        return original(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", fake)


def test_onnx_falls_back_to_tracing_and_keeps_the_batch_axis_free(monkeypatch, tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model = NormalizedClassifier(net, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]).eval()
    _refuse_dynamo(monkeypatch)
    with torch.no_grad():
        exporter = write_onnx(model, torch.rand(2, 3, 8, 8), tmp_path / "model.onnx", 18)
        x = torch.rand(3, 3, 8, 8)
        expected = model(x)
    assert "TorchScript" in exporter
    for n in (1, 3):
        assert (_run_exported(tmp_path / "model.onnx", x[:n]) - expected[:n]).abs().max() <= TOLERANCE


def test_a_failed_export_leaves_no_file(monkeypatch, tmp_path):
    _refuse_dynamo(monkeypatch, also_tracing=True)
    model = NormalizedClassifier(nn.Flatten(), [0.5], [0.5])
    with pytest.raises(RuntimeError, match="cannot export"):
        write_onnx(model, torch.rand(2, 1, 4, 4), tmp_path / "model.onnx", 18)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the parity check fails, the data is gone


@needs_shared
def test_a_failed_parity_check_removes_the_file(runs, tmp_path):
    cfg = _export_cfg(runs("mnist"), tmp_path, "check_tolerance=1e-30", "check_images=4")
    with pytest.raises(ParityError, match=r"differ from the run's by up to .*model\.onnx was removed"):
        export(cfg)
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "model.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))


@needs_shared
def test_without_its_data_the_check_runs_on_random_images(runs, tmp_path):
    result = export(_export_cfg(runs("mnist"), tmp_path, "format=torchscript", f"paths.data_dir={tmp_path / 'none'}"))
    assert result["parity"]["source"].startswith("random images") and result["parity"]["passed"]


# ---------------------------------------------------------------------------- bad input, the command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["format=tflite"], "format must be one of onnx, torchscript, got 'tflite'"),
        (["opset=13"], "opset must be a whole number in 18.."),
        (["check_images=0"], "check_images must be a whole number >= 1"),
        (["check_tolerance=-1"], "check_tolerance must be a number > 0"),
    ],
)
def test_bad_values_are_refused_before_loading(tmp_path, args, message):
    (tmp_path / "last.ckpt").write_bytes(b"")
    cfg = compose_cfg([f"ckpt_path={tmp_path / 'last.ckpt'}", *args], output_dir=tmp_path, config_name="export")
    with pytest.raises(ConfigError, match=message):
        check_job(cfg, "export")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path=missing_run", "format=tflite"], "format must be one of onnx, torchscript, got 'tflite'"),
        (["ckpt_path=missing_run"], "ckpt_path: missing_run does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    result = run_cli("export.py", *args, f"paths.log_dir={tmp_path}", cwd=tmp_path, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("imgbench: error: ") and message in lines[0]
    assert not (tmp_path / "export").exists()


@needs_shared
def test_cli_exports_a_run_directory(runs, tmp_path):
    result = run_cli(
        "export.py", f"ckpt_path={runs('mnist')}", "format=onnx", "check_images=8", f"paths.log_dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (out,) = (tmp_path / "export").iterdir()
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.json", "metrics.json", "export.log", ".hydra"}
    assert "largest |logit difference|" in (out / "export.log").read_text()
    assert "onnxscript" not in (out / "export.log").read_text()  # the exporter's passes are not logged
    meta = json.loads((out / "model.json").read_text())
    assert meta["parity"]["images"] == 8 and meta["parity"]["max_abs_diff"] <= TOLERANCE
