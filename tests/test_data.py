"""The data path: readers for every format, the in-memory loader, batched augmentation, DataModules."""

from __future__ import annotations

import builtins
import io
import os
import tarfile
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgbench.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    InMemoryDataModule,
    MNISTDataModule,
    TensorBatches,
)
from imgbench.data.archives import extract_archive
from imgbench.data.augment import AugmentConfig, BatchTransform, random_flip, random_translate
from imgbench.data.normalization import channel_stats
from imgbench.data.readers import load_npz
from imgbench.errors import ConfigError, DataError

from .conftest import SHARED_DATA, needs_shared, write_image_folder

# ---------------------------------------------------------------------------- loader


def _loader(n=103, **kw):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorBatches(images, torch.arange(n), **kw)


def test_shuffled_epoch_is_a_permutation_that_changes_per_epoch():
    loader = _loader(batch_size=10, shuffle=True, seed=3)
    first = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(103))
    assert len(loader) == 11
    loader.set_epoch(1)
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in loader]), first)  # a pure function of (seed, epoch)


def test_images_and_labels_stay_paired():
    loader = _loader(batch_size=16, shuffle=True)
    for x, y in loader:
        assert torch.equal(x[:, 0, 0, 0].long(), y)


def test_ddp_shares_are_disjoint_and_eval_sees_every_image_once():
    train = [torch.cat([y for _, y in _loader(batch_size=8, shuffle=True, rank=r, world_size=3)]) for r in range(3)]
    assert len({len(t) for t in train}) == 1  # ranks stay in step
    joined = torch.cat(train).tolist()
    assert len(joined) == len(set(joined)) == 102
    evals = [torch.cat([y for _, y in _loader(batch_size=8, rank=r, world_size=3)]) for r in range(3)]
    assert sorted(torch.cat(evals).tolist()) == list(range(103))


def test_steps_per_epoch_streams_across_epochs():
    loader = _loader(n=50, batch_size=8, shuffle=True, steps_per_epoch=4)
    seen = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        batches = [y for _, y in loader]
        assert len(batches) == 4 and all(len(b) == 8 for b in batches)
        seen.append(torch.cat(batches))
    stream = torch.cat(seen)  # 128 images: two full passes and part of a third
    assert sorted(stream[:50].tolist()) == list(range(50))
    assert sorted(stream[50:100].tolist()) == list(range(50))


def test_drop_last():
    assert len(_loader(batch_size=10, shuffle=True, drop_last=True)) == 10
    assert sum(len(y) for _, y in _loader(batch_size=10, shuffle=True, drop_last=True)) == 100


# ---------------------------------------------------------------------------- augmentation


def test_translate_equals_pad_and_crop():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = random_translate(x, 2, 2, "zeros", g)
    g = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (6,), generator=g)
    dx = torch.randint(0, 5, (6,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8])


@pytest.mark.parametrize("mode", ["zeros", "reflect", "edge"])
def test_translate_keeps_shape_and_pixels(mode):
    x = torch.randint(1, 256, (4, 1, 5, 7), dtype=torch.uint8)
    out = random_translate(x, 1, 2, mode)
    assert out.shape == x.shape and out.dtype == torch.uint8
    if mode != "zeros":
        assert set(out.unique().tolist()) <= set(x.unique().tolist())


def test_flip_flips_about_half():
    x = torch.arange(2000 * 4, dtype=torch.float32).view(2000, 1, 1, 4)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flipped = (out[:, 0, 0, 0] == x[:, 0, 0, 3]).float().mean()
    assert 0.45 < flipped < 0.55
    assert torch.equal(out.sort(dim=3).values, x)


def test_normalisation_matches_formula_and_eval_is_deterministic():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    t = BatchTransform([0.5, 0.4, 0.3], [0.2, 0.25, 0.3], AugmentConfig(crop_padding=2, flip=True))
    expected = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(
        1, 3, 1, 1
    )
    assert torch.allclose(t(x, train=False), expected, atol=1e-5)
    assert torch.equal(t(x, train=False), t(x, train=False))
    assert not torch.equal(t(x, train=True), t(x, train=True))


def test_augment_generator_state_round_trips():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    t = BatchTransform([0.5] * 3, [0.2] * 3, AugmentConfig(crop_padding=2, flip=True, lighting=0.1), seed=5)
    t(x, train=True)
    state = t.state_dict()
    expected = t(x, train=True)
    t2 = BatchTransform([0.5] * 3, [0.2] * 3, AugmentConfig(crop_padding=2, flip=True, lighting=0.1), seed=5)
    t2.load_state_dict(state)
    assert torch.equal(t2(x, train=True), expected)


def test_bad_augment_config():
    with pytest.raises(ValueError, match="pad_mode"):
        AugmentConfig(pad_mode="wrap")


def test_channel_stats():
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=7)
    xf = x.double() / 255
    assert np.allclose(mean, xf.mean(dim=(0, 2, 3)).tolist())
    assert np.allclose(std, xf.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False).tolist())


# ---------------------------------------------------------------------------- readers


def test_npz_reader_and_its_errors(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(
        good,
        images=np.zeros((4, 5, 5, 3), np.uint8),
        labels=np.array([0, 1, 2, 1]),
        classes=np.array(["a", "b", "c"]),
    )
    arrays = load_npz(good)
    assert arrays.images.shape == (4, 3, 5, 5) and arrays.classes == ["a", "b", "c"]
    np.savez(tmp_path / "keys.npz", x=np.zeros((4, 5, 5), np.uint8))
    with pytest.raises(DataError, match="lacks the key"):
        load_npz(tmp_path / "keys.npz")
    np.savez(
        tmp_path / "range.npz",
        images=np.zeros((2, 5, 5), np.uint8),
        labels=np.array([0, 7]),
        classes=np.array(["a", "b"]),
    )
    with pytest.raises(DataError, match="labels range"):
        load_npz(tmp_path / "range.npz")
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable npz"):
        load_npz(tmp_path / "trunc.npz")


def test_cifar_official_pickles(cifar_dir):
    dm = CIFAR10DataModule(data_dir=cifar_dir, val_size=20)
    dm.setup()
    assert dm.split_sizes == {"train": 80, "val": 20, "test": 40}
    assert dm.image_shape == (3, 32, 32) and dm.num_classes == 10 and dm.classes[0] == "airplane"
    dm100 = CIFAR100DataModule(data_dir=cifar_dir, val_size=0.1)
    dm100.setup()
    assert dm100.num_classes == 100 and dm100.split_sizes["val"] == 10
    coarse = CIFAR100DataModule(data_dir=cifar_dir, val_size=10, label_type="coarse")
    coarse.setup()
    assert coarse.num_classes == 20


def test_cifar_pickle_cannot_run_code(tmp_path, cifar_dir):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(cifar_dir / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": [0]}, f)
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        CIFAR10DataModule(data_dir=cifar_dir, val_size=10).setup()


def test_missing_data_names_every_place_searched(tmp_path):
    with pytest.raises(DataError) as e:
        CIFAR10DataModule(data_dir=tmp_path).setup()
    msg = str(e.value)
    assert "cifar10-train.npz" in msg and "cifar-10-batches-py" in msg and "IMGBENCH_DATA_DIR" in msg
    assert "download=true" in msg and "\n" not in msg
    with pytest.raises(DataError, match="does not exist"):
        MNISTDataModule(data_dir=tmp_path / "nope").setup()


@needs_shared
def test_shared_mnist_and_fashion_mnist():
    for cls, first in ((MNISTDataModule, [5, 0, 4, 1, 9]), (FashionMNISTDataModule, [9, 0, 0, 3, 0])):
        dm = cls(data_dir=SHARED_DATA, val_size=0)
        dm.setup()
        assert dm.split_sizes == {"train": 60000, "test": 10000}
        assert dm.splits["train"].labels[:5].tolist() == first  # the official order is kept
        assert dm.image_shape == (1, 28, 28)


@needs_shared
def test_validation_is_carved_from_train_and_fixed():
    a = MNISTDataModule(data_dir=SHARED_DATA, val_size=5000, split_seed=0, seed=1)
    b = MNISTDataModule(data_dir=SHARED_DATA, val_size=5000, split_seed=0, seed=2)
    a.setup()
    b.setup()
    assert a.split_sizes == {"train": 55000, "val": 5000, "test": 10000}
    assert torch.equal(a.splits["val"].labels, b.splits["val"].labels)
    assert abs(a.mean[0] - 0.1307) < 0.002  # the training images' own statistics


# ---------------------------------------------------------------------------- image folders


def test_image_folder_png(tmp_path):
    root = write_image_folder(tmp_path / "folder", per_class=5)
    dm = ImageFolderDataModule(root=root, val_size=3, cache_dir=tmp_path / "cache")
    dm.setup()
    assert dm.classes == ["cat", "dog", "fox"]
    assert dm.split_sizes == {"train": 12, "val": 3, "test": 15}
    assert dm.image_shape == (3, 20, 24)
    again = ImageFolderDataModule(root=root, val_size=3, cache_dir=tmp_path / "cache")
    again.setup()  # from the decoded cache
    assert torch.equal(again.splits["test"].images, dm.splits["test"].images)


def test_image_folder_val_and_test(tmp_path):
    root = write_image_folder(tmp_path / "f", splits=("train", "val", "test"), per_class=2)
    dm = ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "c")
    dm.setup()
    assert dm.split_sizes == {"train": 6, "val": 6, "test": 6}


def test_image_folder_mixed_modes_and_sizes(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path / "f", per_class=2, size=(16, 16))
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(root / "train" / "cat" / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "train" / "cat" / "rgba.png")
    Image.fromarray(rgb).convert("P").save(root / "train" / "dog" / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "train" / "dog" / "cmyk.jpg")
    Image.fromarray(rgb).resize((20, 18)).save(root / "train" / "fox" / "big.png")
    with pytest.raises(DataError, match=r"differ in size .*data.image_size"):
        ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "c").setup()
    dm = ImageFolderDataModule(root=root, val_size=0, image_size=[16, 16], cache_dir=tmp_path / "c")
    dm.setup()
    assert dm.splits["train"].images.shape == (11, 3, 16, 16)
    gray = ImageFolderDataModule(root=root, val_size=0, image_size=16, channels=1, cache_dir=tmp_path / "c")
    gray.setup()
    assert gray.image_shape == (1, 16, 16)


def test_image_folder_corrupt_and_empty(tmp_path):
    root = write_image_folder(tmp_path / "f", per_class=2)
    (root / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"broken.png is not a readable image.*skip_corrupt"):
        ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "c").setup()
    dm = ImageFolderDataModule(root=root, val_size=0, skip_corrupt=True, cache_dir=tmp_path / "c")
    dm.setup()
    assert dm.split_sizes["train"] == 6 and len(dm.folder_stats["train"].skipped) == 1
    (root / "train" / "emu").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "c2").setup()


def test_image_folder_class_sets_must_agree(tmp_path):
    root = write_image_folder(tmp_path / "f", per_class=2, splits=("train",))
    write_image_folder(root, classes=("cat", "dog", "owl"), per_class=2, splits=("test",))
    with pytest.raises(DataError, match="only in train: fox; only in test: owl"):
        ImageFolderDataModule(root=root, val_size=0, cache_dir=tmp_path / "c").setup()


def test_archive_is_extracted_once(tmp_path):
    root = write_image_folder(tmp_path / "src" / "pets", per_class=2)
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(root, arcname="pets")
    dm = ImageFolderDataModule(root=archive, name="pets", val_size=0, cache_dir=tmp_path / "cache")
    dm.setup()
    assert dm.split_sizes == {"train": 6, "test": 6}
    assert (tmp_path / "cache" / "pets" / "pets" / "train" / "cat").is_dir()


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "ok/../../escape.txt"])
def test_crafted_tar_cannot_escape(tmp_path, name):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo(name)
        info.size = 4
        t.addfile(info, io.BytesIO(b"evil"))
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(DataError, match="outside"):
        extract_archive(archive, cache)
    assert not (tmp_path / "deep" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (cache / "evil").exists()  # nothing half-extracted is left to be trusted later


def test_crafted_tar_link_cannot_escape(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("data/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../../../etc/passwd"
        t.addfile(info)
    with pytest.raises(DataError, match="outside"):
        extract_archive(archive, tmp_path / "cache")


# ---------------------------------------------------------------------------- crops and evaluation views


def test_random_crop_and_views():
    from imgbench.data.augment import eval_views, random_crop

    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    crops = random_crop(x, (4, 4), torch.Generator().manual_seed(0))
    assert crops.shape == (2, 1, 4, 4)
    for i in range(2):  # each crop is a window of its own image
        assert any(torch.equal(crops[i, 0], x[i, 0, a : a + 4, b : b + 4]) for a in range(3) for b in range(3))
    assert torch.equal(eval_views(x, "one", (4, 4)), x[:, :, 1:5, 1:5])
    flips = eval_views(x, "flip", (4, 4))
    assert flips.shape == (2, 2, 1, 4, 4) and torch.equal(flips[:, 1], flips[:, 0].flip(3))
    ten = eval_views(x, "ten_crop", (4, 4))
    assert ten.shape == (2, 10, 1, 4, 4)
    assert torch.equal(ten[:, 0], x[:, :, :4, :4]) and torch.equal(ten[:, 3], x[:, :, 2:, 2:])
    assert torch.equal(ten[:, 5:], ten[:, :5].flip(4))


def test_datamodule_crop_size_sets_the_model_input(tmp_path):
    root = write_image_folder(tmp_path / "f", per_class=2, size=(12, 12))
    dm = ImageFolderDataModule(root=root, val_size=0, crop_size=8, eval_views="ten_crop", cache_dir=tmp_path / "c")
    dm.setup()
    assert dm.image_shape == (3, 8, 8)
    x = dm.splits["test"].images[:4]
    assert dm.transform(x, train=True).shape == (4, 3, 8, 8)
    assert dm.transform(x, train=False).shape == (4, 10, 3, 8, 8)
    with pytest.raises(Exception, match="larger than the images"):
        ImageFolderDataModule(root=root, val_size=0, crop_size=20, cache_dir=tmp_path / "c").setup()


def test_image_folder_center_crop_resize(tmp_path):
    from PIL import Image

    root = tmp_path / "f"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        wide = np.zeros((10, 20, 3), np.uint8)
        wide[:, 5:15] = 255  # a white centre square in a wide black image
        Image.fromarray(wide).save(root / split / "a" / "wide.png")
    dm = ImageFolderDataModule(root=root, val_size=0, image_size=10, resize="center_crop", cache_dir=tmp_path / "c")
    dm.setup()
    img = dm.splits["train"].images[0]
    assert img.shape == (3, 10, 10) and img.float().mean() > 250  # the centre was kept, not squashed


def test_view_averaging_is_the_mean_softmax():
    from imgbench.modules import ImageClassifier

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    module = ImageClassifier(net, num_classes=3, optimizer=torch.optim.SGD)
    x = torch.randn(4, 2, 3, 2, 2)
    expected = torch.stack([net(x[:, v]).softmax(-1) for v in range(2)]).mean(0)
    assert torch.allclose(module.predict_logits(x).exp(), expected, atol=1e-6)


# ---------------------------------------------------------------------------- declared inputs, constructor checks


@contextmanager
def _no_file_access():
    """Any attempt to open, stat or list a file inside the block fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"file access: {args[:1]}")

    saved = builtins.open, os.stat, os.scandir, os.listdir
    builtins.open, os.stat, os.scandir, os.listdir = refuse, refuse, refuse, refuse
    try:
        yield
    finally:
        builtins.open, os.stat, os.scandir, os.listdir = saved


@pytest.mark.parametrize(
    ("cls", "kwargs", "expected"),
    [
        (MNISTDataModule, {}, (10, 1, (28, 28))),
        (FashionMNISTDataModule, {}, (10, 1, (28, 28))),
        (CIFAR10DataModule, {}, (10, 3, (32, 32))),
        (CIFAR100DataModule, {}, (100, 3, (32, 32))),
        (CIFAR100DataModule, {"label_type": "coarse"}, (20, 3, (32, 32))),
        (CIFAR10DataModule, {"crop_size": 24}, (10, 3, (24, 24))),
        (MNISTDataModule, {"crop_size": [24, 20]}, (10, 1, (24, 20))),
        (InMemoryDataModule, {}, (None, None, None)),
        (InMemoryDataModule, {"crop_size": 8}, (None, None, (8, 8))),
        (ImageFolderDataModule, {"root": "pets.tar.gz"}, (None, 3, None)),
        (ImageFolderDataModule, {"root": "pets", "channels": 1, "image_size": 256}, (None, 1, (256, 256))),
        (ImageFolderDataModule, {"root": "pets", "image_size": [64, 48]}, (None, 3, (64, 48))),
        (ImageFolderDataModule, {"root": "pets", "image_size": 256, "crop_size": 224}, (None, 3, (224, 224))),
    ],
)
def test_declared_inputs_read_no_file(tmp_path, cls, kwargs, expected):
    dm = cls(data_dir=tmp_path / "does-not-exist", **kwargs)
    with _no_file_access():
        declared = dm.declared_inputs()
    assert declared == dict(zip(("num_classes", "in_channels", "image_size"), expected, strict=True))
    assert not dm.splits and not (tmp_path / "does-not-exist").exists()


def test_declared_inputs_match_the_loaded_data(tmp_path, cifar_dir):
    dm = CIFAR100DataModule(data_dir=cifar_dir, val_size=10, label_type="coarse", crop_size=28)
    declared = dm.declared_inputs()
    dm.setup()
    assert declared == {"num_classes": dm.num_classes, "in_channels": dm.image_shape[0], "image_size": (28, 28)}
    root = write_image_folder(tmp_path / "f", per_class=2, size=(16, 16))
    folder = ImageFolderDataModule(root=root, val_size=0, image_size=[12, 10], cache_dir=tmp_path / "c")
    declared = folder.declared_inputs()
    folder.setup()
    assert (declared["in_channels"], *declared["image_size"]) == folder.image_shape


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "many"}, "batch_size"),
        ({"batch_size": 32.0}, "batch_size"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"eval_batch_size": "big"}, "eval_batch_size"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"steps_per_epoch": 2.5}, "steps_per_epoch"),
        ({"val_size": -1}, "val_size"),
        ({"val_size": 1.5}, "val_size"),
        ({"val_size": "5000"}, "val_size"),
        ({"val_size": True}, "val_size"),
        ({"val_size": float("nan")}, "val_size"),
        ({"train_size": 0}, "train_size"),
        ({"train_size": "all"}, "train_size"),
        ({"split_seed": 1.5}, "split_seed"),
        ({"split_seed": None}, "split_seed"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
        ({"on_device": "gpu"}, "on_device"),
        ({"on_device": "false"}, "on_device"),
        ({"drop_last": "yes"}, "drop_last"),
        ({"download": 1}, "download"),
        ({"crop_size": 0}, "crop_size"),
        ({"crop_size": [224]}, "crop_size"),
        ({"crop_size": [24, 0]}, "crop_size"),
        ({"crop_size": "224"}, "crop_size"),
        ({"data_dir": None}, "data_dir"),
        ({"normalize": "z"}, "normalize"),
        ({"eval_views": "two"}, "eval_views"),
        ({"augment": {"flip": "yes"}}, "augment"),
        ({"augment": {"crop_padding": 2.5}}, "augment"),
        ({"augment": {"lighting": float("nan")}}, "augment"),
    ],
)
def test_every_constructor_value_is_checked_before_any_file(tmp_path, kwargs, key):
    kwargs = {"data_dir": tmp_path / "does-not-exist", **kwargs}
    for cls in (MNISTDataModule, CIFAR100DataModule):
        with pytest.raises(ConfigError, match=rf"^data\.{key}\b") as e:
            cls(**kwargs)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"channels": 2}, "channels"),
        ({"channels": True}, "channels"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": [10, -1]}, "image_size"),
        ({"image_size": [10, 10, 10]}, "image_size"),
        ({"resize": "crop"}, "resize"),
        ({"skip_corrupt": "no"}, "skip_corrupt"),
        ({"name": ""}, "name"),
        ({"root": None}, "root"),
        ({"cache_dir": 3}, "cache_dir"),
        ({"val_size": -5}, "val_size"),
    ],
)
def test_image_folder_constructor_checks(tmp_path, kwargs, key):
    kwargs = {"root": "pets", "data_dir": tmp_path / "does-not-exist", **kwargs}
    with pytest.raises(ConfigError, match=rf"^data\.{key}\b") as e:
        ImageFolderDataModule(**kwargs)
    assert "\n" not in str(e.value)


def test_constructor_messages_and_accepted_forms(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.batch_size must be >= 1, got 0$"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(ConfigError, match=r"^data\.train_size must be >= 1 or null, got 0$"):
        MNISTDataModule(train_size=0)
    with pytest.raises(ConfigError, match=r"^data\.on_device must be auto, true or false, got 'gpu'$"):
        MNISTDataModule(on_device="gpu")
    with pytest.raises(ConfigError, match=r"^data\.label_type must be fine or coarse, got 'medium'$"):
        CIFAR100DataModule(label_type="medium")
    dm = MNISTDataModule(
        data_dir=str(tmp_path),
        val_size=5000.0,
        crop_size=(24, 20),
        eval_batch_size=None,
        on_device=True,
        augment=AugmentConfig(flip=True),
        steps_per_epoch=3,
        train_size=100,
        split_seed=-1,
    )
    assert dm.crop_size == (24, 20) and dm.eval_batch_size == dm.batch_size and dm.augment.flip
    assert MNISTDataModule(val_size=0.1, augment={"shift": 0}).val_size == 0.1
    folder = ImageFolderDataModule(root="pets", data_dir=tmp_path, image_size=16, cache_dir=None)
    assert folder.image_size == (16, 16) and folder.cache_dir == tmp_path / ".cache"


def test_train_size_draws_a_random_subset_of_every_class_in_stored_order(tmp_path):
    """An image folder loads class by class: ``data.train_size`` takes a seeded random subset (the first 12 of 40
    images would be one class), kept in the stored order, the same for every run with that ``split_seed``."""
    write_image_folder(tmp_path / "pets", classes=("cat", "dog", "fox", "owl"), per_class=10, size=(8, 8))

    def subset(split_seed: int) -> torch.Tensor:
        dm = ImageFolderDataModule(
            root=str(tmp_path / "pets"), val_size=0, train_size=12, split_seed=split_seed, cache_dir=None
        )
        dm.setup()
        return dm.splits["train"].labels

    full = ImageFolderDataModule(root=str(tmp_path / "pets"), val_size=0, cache_dir=None)
    full.setup()
    assert full.splits["train"].labels[:12].unique().tolist() == [0, 1]  # what the first 12 would be
    labels = subset(0)
    assert len(labels) == 12 and len(labels.unique()) >= 3
    assert labels.tolist() == sorted(labels.tolist())  # stored order (class by class)
    assert torch.equal(subset(0), labels) and not torch.equal(subset(1), labels)
