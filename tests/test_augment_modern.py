"""A modern recipe's augmentation: per-image auto-augment, random erasing, Mixup/CutMix, drawn from our generators."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from imgbench.config import validate
from imgbench.data import InMemoryDataModule
from imgbench.data.arrays import ImageArrays
from imgbench.data.augment import AugmentConfig, BatchTransform, lighting_offsets, random_translate
from imgbench.data.mixing import ERASE_SCALE
from imgbench.errors import ConfigError

from .conftest import compose_cfg

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
IMAGE_OPTIONS = [
    {"auto": "trivialaugment"},
    {"auto": "randaugment"},
    {"auto": "randaugment", "randaugment_ops": 1, "randaugment_magnitude": 30},
    {"erase_prob": 0.5},
]
MIX_OPTIONS = [{"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}]


def _images(n: int = 16, size: int = 16, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)


def _transform(seed: int = 0, **augment) -> BatchTransform:
    return BatchTransform(MEAN, STD, AugmentConfig(**augment), seed=seed)


def _step(t: BatchTransform, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = t(x, train=True)
    return (out, *t.mix(out, y, 10)) if t.augment.mixing else (out,)


def _rectangle(mask: torch.Tensor) -> bool:
    """Whether the True pixels of an (H, W) mask are exactly one filled rectangle."""
    rows, cols = mask.any(1).nonzero().squeeze(1), mask.any(0).nonzero().squeeze(1)
    if not len(rows):
        return False
    expected = torch.zeros_like(mask)
    expected[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return torch.equal(mask, expected)


# ---------------------------------------------------------------------------- every option


@pytest.mark.parametrize("options", IMAGE_OPTIONS + MIX_OPTIONS)
def test_each_option_changes_training_batches_and_leaves_evaluation_alone(options):
    x, y = _images(), torch.arange(16) % 10
    plain, t = _transform(), _transform(**options)
    if t.augment.mixing:
        mixed, soft = t.mix(t(x, train=True), y, 10)
        assert not torch.equal(mixed, plain(x, train=True)) and not torch.equal(soft, torch.eye(10)[y])
    else:
        assert not torch.equal(t(x, train=True), plain(x, train=True))
    assert torch.equal(t(x, train=False), plain(x, train=False))
    assert t.augment.active


@pytest.mark.parametrize("options", IMAGE_OPTIONS + MIX_OPTIONS)
def test_same_seed_same_batches_and_a_saved_state_reproduces_the_next_batch(options):
    x, y = _images(), torch.arange(16) % 10
    options = {**options, "flip": True, "lighting": 0.1}
    a, b = _transform(seed=3, **options), _transform(seed=3, **options)
    for _ in range(2):
        for got, expected in zip(_step(a, x, y), _step(b, x, y), strict=True):
            assert torch.equal(got, expected)
    state = a.state_dict()
    expected = _step(a, x, y)
    resumed = _transform(seed=3, **options)
    resumed.load_state_dict(state)
    for got, want in zip(_step(resumed, x, y), expected, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("options", IMAGE_OPTIONS + MIX_OPTIONS)
def test_ddp_ranks_draw_differently(options):
    x, y = _images(), torch.arange(16) % 10
    rank0, rank1 = _step(_transform(seed=7, **options), x, y), _step(_transform(seed=1007, **options), x, y)
    assert not torch.equal(rank0[-1], rank1[-1])


def test_the_global_generator_is_untouched():
    x = _images()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _transform(auto="trivialaugment", erase_prob=0.5)(x, train=True)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------- options off: draws as before


@pytest.mark.parametrize(
    "options",
    [{}, {"flip": True}, {"crop_padding": 2, "flip": True, "lighting": 0.1}, {"shift": 0.2, "pad_mode": "edge"}],
)
def test_options_off_are_bit_identical_to_the_old_pipeline(options):
    """With the new options at their defaults, batches and generator states are those of the old code path."""
    x = _images()
    off = {"auto": "none", "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "erase_prob": 0.0, "mix_prob": 0.3}
    t, explicit = _transform(seed=9, **options), _transform(seed=9, **options, **off)
    g = torch.Generator().manual_seed(9)
    cfg = AugmentConfig(**options)
    for _ in range(2):
        # the old pipeline, step by step: translate (with flip), or flip alone, then normalise, then lighting
        pad = cfg.crop_padding + round(cfg.shift * 16)
        if pad:
            u = random_translate(x, pad, pad, cfg.pad_mode, g, flip=cfg.flip)
        elif cfg.flip:
            mirrored = torch.rand(16, generator=g) < 0.5
            u = torch.where(mirrored[:, None, None, None], x.flip(3), x)
        else:
            u = x
        want = t.normalize(u)
        if cfg.lighting:
            want += (lighting_offsets(16, cfg.lighting, torch.device("cpu"), g) / torch.tensor(STD))[:, :, None, None]
        assert torch.equal(t(x, train=True), want) and torch.equal(explicit(x, train=True), want)
        assert torch.equal(t.state_dict()["cpu"], g.get_state())
    assert torch.equal(t(x, train=False), _transform()(x, train=False))


# ---------------------------------------------------------------------------- auto-augment


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_auto_augment_is_per_image(policy, channels):
    """Identical images come out different: each image draws its own op (and magnitude)."""
    x = _images(n=1, size=32, channels=channels).expand(32, -1, -1, -1)
    out = BatchTransform([0.5] * channels, [0.25] * channels, AugmentConfig(auto=policy))(x, train=True)
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) >= 6
    assert out.shape == x.shape and out.dtype == torch.float32


def test_auto_augment_leaves_its_input_alone_and_keeps_flips():
    x = _images()
    copy = x.clone()
    flipped = _transform(flip=True, auto="trivialaugment", seed=1)(x, train=True)
    assert torch.equal(x, copy) and flipped.shape == x.shape


# ---------------------------------------------------------------------------- Mixup / CutMix


def _distinct_batch(n: int = 16, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images that differ from their partner in the flipped batch at every pixel, one class each."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    return x + torch.rand(n, 3, size, size), torch.arange(n)


def test_mixup_is_the_stated_combination_and_soft_targets_sum_to_one():
    x, y = _distinct_batch()
    t = _transform(mixup_alpha=0.4, seed=2)
    lams = []
    for _ in range(20):
        mixed, soft = t.mix(x, y, 16)
        assert soft.dtype == torch.float32 and soft.shape == (16, 16)
        assert torch.allclose(soft.sum(1), torch.ones(16), atol=1e-6)
        lam = soft[0, 0].item()
        assert soft[0, 15].item() == pytest.approx(1 - lam, abs=1e-6)
        assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-5)
        lams.append(lam)
    assert len(set(lams)) == 20 and all(0 <= lam <= 1 for lam in lams)


def test_cutmix_pastes_one_box_and_lambda_is_its_real_area():
    x, y = _distinct_batch()
    t = _transform(cutmix_alpha=1.0, seed=4)
    for _ in range(20):
        mixed, soft = t.mix(x, y, 16)
        pasted = mixed != x  # (n, c, h, w): every pixel differs from its partner's
        box = pasted[0, 0]
        assert (pasted == box).all()  # the same box in every image and channel
        assert torch.equal(mixed[pasted], x.flip(0)[pasted]) and torch.equal(mixed[~pasted], x[~pasted])
        lam = 1 - box.float().mean().item()
        assert torch.allclose(soft[torch.arange(16), y], torch.full((16,), lam), atol=1e-6)
        assert torch.allclose(soft[torch.arange(16), y.flip(0)], torch.full((16,), 1 - lam), atol=1e-6)
        assert torch.allclose(soft.sum(1), torch.ones(16), atol=1e-6)
        if box.any():
            assert _rectangle(box)


def test_mix_prob_and_switch_prob():
    x, y = _distinct_batch()
    never = _transform(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.0)
    for _ in range(5):
        mixed, soft = never.mix(x, y, 16)
        assert torch.equal(mixed, x) and torch.equal(soft, torch.eye(16))
    both = _transform(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, seed=1)
    kinds = set()
    for _ in range(30):
        mixed, _ = both.mix(x, y, 16)
        changed = (mixed != x)[0, 0]
        kinds.add("cutmix" if not changed.all() else "mixup")
    assert kinds == {"cutmix", "mixup"}


# ---------------------------------------------------------------------------- random erasing


def test_erasing_changes_only_one_box_per_erased_image():
    x = _images(n=64, size=32)
    plain = _transform()(x, train=True)
    out = _transform(erase_prob=0.5, seed=5)(x, train=True)
    changed = (out != plain).any(1)  # (n, h, w)
    erased = changed.flatten(1).any(1)
    assert 15 < erased.sum() < 49  # about half the images
    for mask in changed[erased]:
        assert _rectangle(mask)
        share = mask.float().mean().item()
        assert ERASE_SCALE[0] * 0.5 < share < ERASE_SCALE[1] * 1.5  # the rounded box of the drawn share


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"auto": "autoaugment"}, "augment.auto"),
        ({"auto": 1}, "augment.auto"),
        ({"randaugment_ops": 0}, "augment.randaugment_ops"),
        ({"randaugment_ops": 1.5}, "augment.randaugment_ops"),
        ({"randaugment_magnitude": 31}, "augment.randaugment_magnitude"),
        ({"mixup_alpha": -0.1}, "augment.mixup_alpha"),
        ({"cutmix_alpha": float("nan")}, "augment.cutmix_alpha"),
        ({"cutmix_alpha": float("inf")}, "augment.cutmix_alpha"),
        ({"mixup_alpha": "big"}, "augment.mixup_alpha"),
        ({"mix_prob": 1.5}, "augment.mix_prob"),
        ({"switch_prob": -0.1}, "augment.switch_prob"),
        ({"erase_prob": True}, "augment.erase_prob"),
        ({"erase_prob": 2}, "augment.erase_prob"),
    ],
)
def test_bad_values_name_their_field(options, key):
    with pytest.raises(ValueError, match=key) as info:
        AugmentConfig(**options)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=rf"^data\.augment: {key}"):
        _Tiny(augment=options)


def test_mixing_and_active():
    assert not AugmentConfig().active and not AugmentConfig(mix_prob=0.5, switch_prob=0.1).active
    assert AugmentConfig(cutmix_alpha=1.0).mixing and not AugmentConfig(erase_prob=0.1).mixing
    assert all(AugmentConfig(**o).active for o in IMAGE_OPTIONS + MIX_OPTIONS)


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_configs_accept_the_new_keys(dataset):
    cfg = compose_cfg(
        [
            f"data={dataset}",
            "data.augment.auto=trivialaugment",
            "data.augment.mixup_alpha=0.2",
            "data.augment.cutmix_alpha=1.0",
            "data.augment.switch_prob=0.5",
            "data.augment.erase_prob=0.25",
        ]
    )
    validate(cfg)
    dm = instantiate(cfg.data, _convert_="all")
    assert (dm.augment.auto, dm.augment.cutmix_alpha, dm.augment.erase_prob) == ("trivialaugment", 1.0, 0.25)
    cfg = compose_cfg([f"data={dataset}", "data.augment.auto=randaugment", "data.augment.randaugment_magnitude=15"])
    validate(cfg)
    with pytest.raises(ConfigError, match=r"data\.augment: augment\.mix_prob"):
        validate(compose_cfg([f"data={dataset}", "data.augment.mix_prob=2.0"]))


# ---------------------------------------------------------------------------- the DataModule's batches


class _Tiny(InMemoryDataModule):
    name = "tiny"

    def load_split(self, split: str) -> ImageArrays:
        n = 40 if split == "train" else 10
        images = _images(n=n, size=8, seed=0 if split == "train" else 1)
        return ImageArrays(images, torch.arange(n) % 4, ["a", "b", "c", "d"])


def _attach(dm: InMemoryDataModule, training: bool) -> None:
    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    dm.trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=strategy, training=training, current_epoch=0)


def test_training_batches_carry_soft_targets_when_mixing():
    dm = _Tiny(batch_size=8, val_size=0, augment={"cutmix_alpha": 1.0, "erase_prob": 0.5, "auto": "randaugment"})
    dm.setup()
    x, y = dm.splits["train"].images[:8], torch.arange(8) % 4
    _attach(dm, training=True)
    images, labels, soft = dm.on_after_batch_transfer((x, y), 0)
    assert images.shape == (8, 3, 8, 8) and images.dtype == torch.float32
    assert labels is y and soft.shape == (8, 4) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(8), atol=1e-6)
    _attach(dm, training=False)
    images, labels = dm.on_after_batch_transfer((x, y), 0)
    assert torch.equal(images, dm.transform(x, train=False))
    plain = _Tiny(batch_size=8, val_size=0, augment={"auto": "trivialaugment"})
    plain.setup()
    _attach(plain, training=True)
    assert len(plain.on_after_batch_transfer((x, y), 0)) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_everything_runs_on_the_gpu_and_resumes_exactly():
    x, y = _images(n=32, size=32).cuda(), (torch.arange(32) % 10).cuda()
    options = {"flip": True, "auto": "trivialaugment", "erase_prob": 0.25, "mixup_alpha": 0.2, "cutmix_alpha": 1.0}
    t = _transform(seed=1, **options)
    _step(t, x, y)
    state = t.state_dict()
    expected = _step(t, x, y)
    resumed = _transform(seed=1, **options)
    resumed.load_state_dict(state)
    for got, want in zip(_step(resumed, x, y), expected, strict=True):
        assert got.is_cuda and torch.equal(got, want)
