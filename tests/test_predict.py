"""predict.py: any images through a trained run, prepared as its test images were; agreement with the run's test."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgbench.data import StreamingDataModule
from imgbench.data.folders import decode_image_file
from imgbench.data.image_views import ImageView
from imgbench.data.inference import folder_labels
from imgbench.predict import predict
from imgbench.run import run_task, train

from .conftest import SHARED_DATA, compose_cfg, needs_shared, run_cli, write_image_folder

N_IMAGES = 40  # the first test images: one test batch of the run


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A few steps of keras_fcn on MNIST, tested (with flip views) on the first 40 test images; its submission.csv."""
    if not (SHARED_DATA / "mnist-test.npz").is_file():
        pytest.skip("needs ../shared/datasets (IMGBENCH_DATA_DIR)")
    run_dir = tmp_path_factory.mktemp("predict") / "run"
    overrides = [
        "model=keras_fcn",
        "data.train_size=256",
        "data.val_size=0",
        "data.eval_views=flip",
        f"data.eval_batch_size={N_IMAGES}",
        "+trainer.limit_test_batches=1",
        "trainer.max_epochs=1",
        "callbacks=[last_checkpoint,submission]",
        "logger=csv",
    ]
    result = train(compose_cfg(overrides, output_dir=run_dir))
    assert result["status"] == "finished"
    return run_dir, _rows(run_dir / "submission.csv")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The first 40 MNIST test images as gray PNGs in class folders: digits/<label>/<index>.png."""
    if not (SHARED_DATA / "mnist-test.npz").is_file():
        pytest.skip("needs ../shared/datasets (IMGBENCH_DATA_DIR)")
    test = np.load(SHARED_DATA / "mnist-test.npz")
    root = tmp_path_factory.mktemp("inputs") / "digits"
    for i in range(N_IMAGES):
        folder = root / str(test["classes"][test["labels"][i]])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test["images"][i]).save(folder / f"{i:05d}.png")
    return root


def _predict(run_dir: Path, input_: Path | str, out: Path, *overrides: str) -> tuple[dict, list[dict[str, str]]]:
    cfg = compose_cfg([f"ckpt_path={run_dir}", f"input={input_}", *overrides], output_dir=out, config_name="predict")
    result = predict(cfg)
    assert json.loads((out / "metrics.json").read_text())["predicted"] == result["predicted"]
    return result, _rows(out / "predictions.csv")


def _index(row: dict[str, str]) -> int:
    return int(Path(row["file"]).stem)


@needs_shared
def test_top1_agrees_with_the_runs_test_predictions(mnist_run, digits, tmp_path):
    run_dir, submission = mnist_run
    result, rows = _predict(run_dir, digits, tmp_path, "top_k=10", "views=run")
    assert len(rows) == result["predicted"] == N_IMAGES and result["unreadable"]["count"] == 0
    assert list(rows[0]) == ["file", "label", *(f"{k}_{j}" for j in range(1, 11) for k in ("pred", "prob"))]
    by_index = {int(r["index"]): r for r in submission}
    for row in rows:
        expected = by_index[_index(row)]
        assert row["label"] == expected["label_name"] == Path(row["file"]).parent.name
        assert row["pred_1"] == expected["predicted_name"]
        assert float(row["prob_1"]) == pytest.approx(float(expected["probability"]), abs=1e-4)
        probs = [float(row[f"prob_{j}"]) for j in range(1, 11)]
        assert sum(probs) == pytest.approx(1, abs=1e-4) and probs == sorted(probs, reverse=True)
        assert sorted(row[f"pred_{j}"] for j in range(1, 11)) == [str(d) for d in range(10)]
    correct = sum(r["label"] == r["predicted_name"] for r in submission) / len(submission)
    assert result["metrics"]["predict/acc"] == pytest.approx(correct, abs=1e-9)
    assert result["metrics"]["predict/acc_top10"] == 1.0
    matrix = np.array(result["confusion_matrix"]["matrix"])
    assert matrix.sum() == N_IMAGES and np.trace(matrix) == round(correct * N_IMAGES)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


@needs_shared
def test_views_one_is_the_centre_image_alone(mnist_run, digits, tmp_path):
    run_dir, _ = mnist_run
    _, run_views = _predict(run_dir, digits, tmp_path / "run", "views=run")
    _, flip = _predict(run_dir, digits, tmp_path / "flip", "views=flip")
    result, one = _predict(run_dir, digits, tmp_path / "one")  # the default: one view
    assert result["views"] == "one" and list(one[0])[2:4] == ["pred_1", "prob_1"] and "pred_6" not in one[0]
    assert flip == run_views
    assert [r["file"] for r in one] == [r["file"] for r in run_views]
    assert any(a["prob_1"] != b["prob_1"] for a, b in zip(one, run_views))


@needs_shared
def test_every_image_format_is_read_and_a_corrupt_file_is_listed(mnist_run, tmp_path):
    run_dir, _ = mnist_run
    digit = np.load(SHARED_DATA / "mnist-test.npz")["images"][0]
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = Image.fromarray(digit)
    gray.save(folder / "gray.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(folder / "gray16.png")  # 16-bit: same digit, scaled
    gray.convert("RGBA").save(folder / "rgba.png")
    gray.convert("RGB").convert("CMYK").save(folder / "cmyk.jpg")
    gray.convert("P").save(folder / "palette.png")
    gray.convert("P").save(folder / "palette.gif")
    gray.convert("RGB").save(folder / "rgb.webp")
    gray.resize((56, 40)).save(folder / "other_size.bmp")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "notes.txt").write_text("not an image")
    result, rows = _predict(run_dir, folder, tmp_path / "out", "top_k=3")
    files = {r["file"]: r for r in rows}
    assert set(files) == {
        "gray.png", "gray16.png", "rgba.png", "cmyk.jpg", "palette.png", "palette.gif", "rgb.webp",
        "other_size.bmp",
    }  # fmt: skip
    assert "label" not in rows[0]  # not class folders
    assert result["unreadable"]["count"] == 1 and result["unreadable"]["files"][0]["file"] == "corrupt.png"
    assert result["ignored"]["files"] == ["notes.txt"]
    assert files["gray16.png"] == {**files["gray.png"], "file": "gray16.png"}
    assert "metrics" not in result


@needs_shared
def test_archives_and_globs_give_the_folders_rows(mnist_run, digits, tmp_path):
    run_dir, _ = mnist_run
    _, folder = _predict(run_dir, digits, tmp_path / "folder")
    with zipfile.ZipFile(tmp_path / "digits.zip", "w") as z:
        for p in sorted(digits.rglob("*.png")):
            z.write(p, p.relative_to(digits).as_posix())
    with tarfile.open(tmp_path / "digits.tar.gz", "w:gz") as t:
        t.add(digits, arcname="digits")  # wrapped in a folder, as archives often are
    _, zipped = _predict(run_dir, tmp_path / "digits.zip", tmp_path / "zip")
    result, tarred = _predict(run_dir, tmp_path / "digits.tar.gz", tmp_path / "tar")
    _, globbed = _predict(run_dir, f"{digits}/*/*.png", tmp_path / "glob")
    assert zipped == folder and globbed == folder
    assert [{**r, "file": r["file"].removeprefix("digits/")} for r in tarred] == folder
    assert "predict/acc" in result["metrics"]  # the class folders are found inside the wrapping folder
    assert not list((tmp_path / "tar").glob(".input-*"))  # the extracted copy is gone


def _fails(capsys, tmp_path: Path, *overrides: str) -> str:
    out = tmp_path / "failed"
    cfg = compose_cfg(list(overrides), output_dir=out, config_name="predict")
    with pytest.raises(SystemExit) as e:
        run_task(predict, cfg)
    assert e.value.code == 2
    assert not (out / "predictions.csv").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("imgbench: error: ")
    return lines[-1]


@needs_shared
def test_bad_input_is_one_line_and_exit_status_2(mnist_run, digits, tmp_path, capsys):
    run_dir, _ = mnist_run
    ckpt, images = f"ckpt_path={run_dir}", f"input={digits}"
    assert "input=" in _fails(capsys, tmp_path, ckpt, f"input={tmp_path / 'nowhere'}")
    assert "matches no file" in _fails(capsys, tmp_path, ckpt, f"input={tmp_path}/*.png")
    assert "top_k must be a whole number >= 1" in _fails(capsys, tmp_path, ckpt, images, "top_k=0")
    assert "top_k must be between 1 and 10" in _fails(capsys, tmp_path, ckpt, images, "top_k=11")
    assert "views must be one of" in _fails(capsys, tmp_path, ckpt, images, "views=mirror")
    assert "ten-crop views need" in _fails(capsys, tmp_path, ckpt, images, "views=ten_crop")
    assert "does not exist" in _fails(capsys, tmp_path, f"ckpt_path={tmp_path / 'no_run'}", images)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    assert "none of the 1 image files" in _fails(capsys, tmp_path, ckpt, f"input={junk}")
    (junk / "a.png").unlink()
    (junk / "b.txt").write_text("text")
    assert "holds no image files" in _fails(capsys, tmp_path, ckpt, f"input={junk}")


@needs_shared
def test_cli_writes_its_own_directory_and_prints_the_first_rows(mnist_run, digits, tmp_path):
    run_dir, _ = mnist_run
    single = digits / "7" / "00000.png"
    result = run_cli("predict.py", f"ckpt_path={run_dir}", f"input={single}", f"paths.log_dir={tmp_path}", "top_k=2")
    assert result.returncode == 0, result.stderr[-2000:]
    (out,) = (tmp_path / "predict").iterdir()
    rows = _rows(out / "predictions.csv")
    assert [r["file"] for r in rows] == ["00000.png"]
    assert list(rows[0]) == ["file", "pred_1", "prob_1", "pred_2", "prob_2"]
    assert "00000.png" in result.stdout + result.stderr and "top-2" in result.stdout + result.stderr
    bad = run_cli("predict.py", f"ckpt_path={run_dir}", f"input={single}", f"paths.log_dir={tmp_path}", "top_k=0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("imgbench: error: top_k")
    assert len(list((tmp_path / "predict").iterdir())) == 1  # refused before a run directory was made


def test_rgb_image_folder_run_scores_its_test_folder_as_its_test(tmp_path):
    """An RGB image-folder run (images resized to 32 by centre crops) predicts its own test folder as it tested it."""
    pets = write_image_folder(tmp_path / "pets", per_class=4, size=(40, 48))
    overrides = [
        "data=imagefolder",
        f"data.root={pets}",
        "data.image_size=32",
        "data.resize=center_crop",
        "data.val_size=0",
        "model=keras_fcn",
        "trainer.max_epochs=1",
        "callbacks=[last_checkpoint]",
        "logger=csv",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    run = train(compose_cfg(overrides, output_dir=tmp_path / "run"))
    result, rows = _predict(tmp_path / "run", pets / "test", tmp_path / "out")  # top_k: 5 by default, 3 here
    assert result["predicted"] == 12 and {r["label"] for r in rows} == {"cat", "dog", "fox"}
    assert result["metrics"]["predict/acc"] == pytest.approx(run["metrics"]["test/acc"], abs=1e-6)
    assert result["metrics"]["predict/acc_top3"] == 1.0
    shutil.rmtree(tmp_path / "cache")  # the checkpoint alone: the run's decoded data is not needed
    again, _ = _predict(tmp_path / "run", pets / "test", tmp_path / "again")
    assert again["metrics"]["predict/acc"] == result["metrics"]["predict/acc"]


def test_streaming_images_are_cut_as_its_evaluation_cuts_them():
    """A JPEG read by predict.py becomes exactly what the streaming path's evaluation view makes of it."""
    dm = StreamingDataModule(root="prepared", image_size=24, eval_resize=32)
    dm.restore({"classes": ["a", "b"], "image_shape": [3, 24, 24], "mean": [0.5] * 3, "std": [0.25] * 3})
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(buf, "JPEG")
    image, _ = decode_image_file(Path("x.jpg"), buf.getvalue(), channels=3)
    prepared = dm.prepare_image(image)
    assert prepared.shape == (3, 32, 32) and dm.stored_size == (32, 32)
    assert torch.equal(prepared, ImageView(False, 24, 32)(buf.getvalue(), 0, 0))
    assert dm.transform(prepared[None], train=False).shape == (1, 3, 24, 24)
    dm.use_eval_views("ten_crop")
    assert dm.transform(prepared[None], train=False).shape == (1, 10, 3, 24, 24)


def test_class_folders_are_found_by_folder_or_readable_name():
    wnids, words = ["n01", "n02", "n03"], ["tench", "goldfish", "shark"]
    assert folder_labels(["n02/a.jpg", "n01/b.jpg"], [wnids, words]) == [1, 0]
    assert folder_labels(["shark/a.jpg", "tench/b.jpg"], [wnids, words]) == [2, 0]
    assert folder_labels(["pack/shark/a.jpg", "pack/n02/b.jpg"], [wnids, words]) == [2, 1]  # a wrapping folder
    assert folder_labels(["shark/a.jpg", "b.jpg"], [wnids, words]) is None  # a file outside the class folders
    assert folder_labels(["shark/a.jpg", "whale/b.jpg"], [wnids, words]) is None  # a folder that is no class
    assert folder_labels(["a.jpg"], [wnids, words]) is None
