"""Auto-augment policies (TrivialAugment, RandAugment) applied per image to a uint8 batch.

Each image gets its own operation and magnitude, as in the papers. torchvision's v2 transforms do the work (one
image per call: their ops take one magnitude each), and every image's random draws follow from a seed drawn
from :class:`~imgbench.data.augment.BatchTransform`'s generator, so a checkpoint's generator state reproduces them
and every DDP rank augments differently.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

AUTO_POLICIES = ("none", "trivialaugment", "randaugment")
RANDAUGMENT_MAX_MAGNITUDE = 30  # v2.RandAugment's default 31 magnitude bins: magnitudes 0..30

_SEED_BOUND = 2**62  # per-image seeds: any non-negative int64 torch.manual_seed accepts


def auto_policy(name: str, num_ops: int = 2, magnitude: int = 9) -> v2.Transform | None:
    """The torchvision transform of a policy name.

    Bilinear interpolation and a black fill for the geometric ops, as torchvision's reference recipes use.

    Args:
        name: ``none``, ``trivialaugment`` (TrivialAugment Wide) or ``randaugment``.
        num_ops: RandAugment's operations per image.
        magnitude: RandAugment's magnitude (0..30).

    Returns:
        The transform, or None for ``none``.

    Raises:
        ValueError: an unknown name.
    """
    if name == "trivialaugment":
        return v2.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR)
    if name == "randaugment":
        return v2.RandAugment(num_ops=num_ops, magnitude=magnitude, interpolation=InterpolationMode.BILINEAR)
    if name == "none":
        return None
    raise ValueError(f"augment.auto must be one of {', '.join(AUTO_POLICIES)}, got '{name}'")


def auto_augment(x: torch.Tensor, policy: v2.Transform, generator: torch.Generator) -> torch.Tensor:
    """Apply ``policy`` to each image of a uint8 batch with its own draws.

    Args:
        x: uint8 images ``(N, C, H, W)`` on any device (left unchanged).
        policy: a v2 transform of one image (see :func:`auto_policy`).
        generator: the source of the per-image seeds (on ``x``'s device): one draw per image.

    Returns:
        The augmented images, the shape and dtype of ``x``.
    """
    n = x.shape[0]
    seeds = torch.randint(_SEED_BOUND, (n,), device=generator.device, generator=generator).tolist()
    out = x.clone()  # one batched copy: images the policy leaves alone (its Identity op) are not written again
    cuda = x.device.type == "cuda"
    # v2 draws ops and magnitudes from torch's global generator. Forking it keeps the global stream (model
    # init, dropout) untouched, and reseeding it per image makes each image's draws a function of a seed from
    # our generator: saved in checkpoints (exact resume) and seeded per rank (DDP ranks differ).
    with torch.random.fork_rng(devices=[x.device.index] if cuda else [], device_type="cuda"):
        for i, seed in enumerate(seeds):
            torch.default_generator.manual_seed(seed)
            if cuda:  # v2 draws on the default device, which may be set to this GPU
                torch.cuda.default_generators[x.device.index].manual_seed(seed)
            image = x[i]
            result = policy(image)
            if result is not image:
                out[i] = result
    return out
