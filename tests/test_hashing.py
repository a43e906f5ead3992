"""HashClassifier through a real Lightning Trainer: fit a few steps, test, and check the Hamming evaluation."""

from __future__ import annotations

import functools
import logging
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from imgbench.data import ImageArrays, InMemoryDataModule
from imgbench.errors import ConfigError
from imgbench.metrics import binarize, retrieval_metrics
from imgbench.models import create_model, keras_cnn
from imgbench.modules import HashClassifier, ImageClassifier, has_hash_codes


class TinyHashNet(nn.Module):
    """conv -> pool -> linear -> sigmoid hash layer -> classifier, the shape of alexnet_hash in miniature."""

    def __init__(self, num_classes: int = 3, in_channels: int = 1, hash_bits: int = 12) -> None:
        super().__init__()
        self.hash_bits = hash_bits
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.hash = nn.Linear(32, hash_bits)
        self.fc = nn.Linear(hash_bits, num_classes)

    def forward_with_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.sigmoid(self.hash(torch.flatten(self.body(x), 1)))
        return self.fc(h), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_codes(x)[0]


class TinyData(InMemoryDataModule):
    """Random 8x8 gray images whose mean brightness depends on the class (so codes carry some signal)."""

    name = "tiny"

    def __init__(self, n_train: int = 1100, n_test: int = 120, **kwargs) -> None:
        super().__init__(batch_size=32, eval_batch_size=64, val_size=100, **kwargs)
        self.sizes = {"train": n_train, "test": n_test}

    def load_split(self, split: str) -> ImageArrays:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = self.sizes[split]
        labels = torch.randint(0, 3, (n,), generator=g)
        noise = torch.randint(0, 120, (n, 1, 8, 8), generator=g)
        images = (noise + 60 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
        return ImageArrays(images, labels, ["a", "b", "c"])


def sgd():
    return functools.partial(torch.optim.SGD, lr=0.05)


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_detects_nets_with_codes():
    assert has_hash_codes(TinyHashNet())
    assert has_hash_codes(create_model("alexnet_hash", in_channels=1, image_size=28))
    assert not has_hash_codes(create_model("alexnet_hash", in_channels=1, image_size=28, hash_bits=0))
    assert not has_hash_codes(keras_cnn())
    with pytest.raises(ConfigError, match="no hash codes"):
        HashClassifier(keras_cnn(), num_classes=10, optimizer=sgd())


def test_fit_and_test_log_every_hash_metric(tmp_path):
    torch.manual_seed(0)
    dm = TinyData()
    module = HashClassifier(TinyHashNet(), num_classes=3, optimizer=sgd(), knn_k=5)
    assert isinstance(module, ImageClassifier) and module.hparams.knn_k == 5
    t = trainer(max_steps=2, limit_val_batches=1)
    t.fit(module, datamodule=dm)
    t.test(module, datamodule=dm, verbose=False)
    logged = {k: float(v) for k, v in t.callback_metrics.items() if k.startswith("test/")}
    expected = {"test/acc", "test/loss", "test/knn_acc", "test/map", "test/map@1000", "test/precision_r2"}
    expected |= {f"test/precision@{k}" for k in range(100, 1001, 100)}
    assert expected <= set(logged)
    assert all(0.0 <= logged[k] <= 1.0 for k in expected - {"test/loss"})

    # the protocol names what was measured
    protocol = module.hash_protocol
    assert protocol["num_queries"] == 120 and protocol["num_database"] == 1000  # 1100 train - 100 validation
    assert protocol["hash_bits"] == 12 and protocol["knn_k"] == 5 and protocol["map_cutoff"] == 1000
    assert protocol["precision_ks"] == list(range(100, 1001, 100))

    # the same numbers from codes computed by hand: test images are the queries, the training split the database
    net = module.net.eval()
    with torch.no_grad():
        q = binarize(net.forward_with_codes(dm.transform(dm.splits["test"].images, train=False))[1])
        d = binarize(net.forward_with_codes(dm.transform(dm.splits["train"].images, train=False))[1])
    want = retrieval_metrics(q, dm.splits["test"].labels, d, dm.splits["train"].labels, knn_k=5)
    for key, value in want.items():
        assert logged[f"test/{key}"] == pytest.approx(value, abs=1e-6), key

    # the hash options are hyperparameters, and checkpoints stay loadable with weights_only=True
    t.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert saved["knn_k"] == 5 and list(saved["precision_ks"]) == list(range(100, 1001, 100))


def test_small_database_skips_impossible_k(caplog):
    dm = TinyData(n_train=400, n_test=50)  # a database of 300 images
    module = HashClassifier(TinyHashNet(hash_bits=5), num_classes=3, optimizer=sgd(), knn_k=500, map_cutoff=1000)
    with caplog.at_level(logging.WARNING):
        trainer().test(module, datamodule=dm, verbose=False)
    assert module.hash_protocol["precision_ks"] == [100, 200, 300]
    assert module.hash_protocol["knn_k"] == 300
    assert "precision@k skipped" in caplog.text and "knn_k=500" in caplog.text


def test_needs_an_in_memory_datamodule():
    module = HashClassifier(TinyHashNet(), num_classes=3, optimizer=sgd())
    dm = TinyData()
    dm.setup()
    with pytest.raises(ConfigError, match="InMemoryDataModule"):
        trainer().test(module, dataloaders=dm.test_dataloader(), verbose=False)


def test_sharded_items_are_gathered_in_their_original_order():
    """Under DDP rank r holds items r, r + world, ...; the gathered database must be in the split's order."""
    module = HashClassifier(TinyHashNet(), num_classes=3, optimizer=sgd())
    world, items = 4, torch.arange(10).view(10, 1).repeat(1, 3)
    shards = [items[r::world] for r in range(world)]

    def fake_all_gather(t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            return torch.tensor([len(s) for s in shards])
        longest = t.shape[0]
        return torch.stack([torch.cat([s, s.new_zeros(longest - len(s), *s.shape[1:])]) for s in shards])

    module._trainer = SimpleNamespace(world_size=world)
    module.all_gather = fake_all_gather
    gathered = module._gather_in_order(shards[1])
    assert torch.equal(gathered, items)
    flags = np.arange(10) % 3 == 0
    bool_shards = [torch.from_numpy(flags[r::world]) for r in range(world)]
    shards = [s.long() for s in bool_shards]
    assert torch.equal(module._gather_in_order(bool_shards[0]), torch.from_numpy(flags))


def test_bad_options_fail_clearly():
    with pytest.raises(ConfigError, match="knn_k >= 1"):
        HashClassifier(TinyHashNet(), num_classes=3, optimizer=sgd(), knn_k=0)


def test_alexnet_hash_on_cifar100_from_train_py_and_eval(tmp_path, cifar_dir):
    """`python train.py model=alexnet_hash data=cifar100`, on CIFAR-100 files written in the official format:
    128 hash bits (the paper's n for CIFAR-100), the hash metrics, and eval.py rebuilding the same model."""
    from imgbench.run import evaluate, train

    from .conftest import compose_cfg

    cfg = compose_cfg(
        [
            "model=alexnet_hash",
            "data=cifar100",
            f"paths.data_dir={cifar_dir}",
            "data.val_size=20",
            "trainer.max_epochs=1",
            "data.batch_size=16",
            "data.eval_batch_size=20",
            "logger=csv",
        ],
        output_dir=tmp_path / "run",
    )
    result = train(cfg)
    assert result["hash_protocol"]["hash_bits"] == 128 and result["hash_protocol"]["num_database"] == 80
    assert {"test/knn_acc", "test/map", "test/map@1000", "test/precision_r2"} <= set(result["metrics"])
    evaluated = evaluate(
        compose_cfg(
            [f"ckpt_path={tmp_path / 'run'}", f"paths.data_dir={cifar_dir}"],
            output_dir=tmp_path / "eval",
            config_name="eval",
        )
    )
    assert evaluated["matches_run"] is True
    assert evaluated["hash_protocol"]["hash_bits"] == 128
