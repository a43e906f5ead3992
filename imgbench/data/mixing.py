"""Mixup, CutMix and random erasing on normalised float batches, vectorised and on the batch's device.

Every draw comes from the generator passed in (a :class:`~imgbench.data.augment.BatchTransform`'s, saved in
checkpoints) and stays a tensor on the batch's device: nothing waits for the GPU, and the number of draws per
batch depends only on the settings, so a resumed run draws the same.
"""

from __future__ import annotations

import math

import torch

# torchvision's RandomErasing defaults (Zhong et al.): the box's share of the image and its aspect ratio
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
ERASE_ATTEMPTS = 10  # boxes tried per image, as torchvision and timm do; an image none fits stays as it is


def sample_beta(alpha: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One draw of Beta(alpha, alpha) as X / (X + Y) of two Gamma(alpha) draws (torch's Beta has no generator).

    Args:
        alpha: the concentration (> 0).
        generator: the random generator (on ``device``).
        device: where the draw is made.

    Returns:
        A float64 scalar tensor in [0, 1].
    """
    # float64: Gamma(0.2) draws below float32's smallest number happen (about 1 in 10 million)
    gamma = torch._standard_gamma(
        torch.full((2,), float(alpha), dtype=torch.float64, device=device), generator=generator
    )
    return gamma[0] / gamma.sum().clamp_min(torch.finfo(torch.float64).tiny)


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    mix_prob: float,
    switch_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup/CutMix in timm's batch mode: one lambda per batch, each image mixed with the batch flipped.

    The batch is mixed with probability ``mix_prob``; with both alphas above 0, CutMix is chosen with probability
    ``switch_prob``, else Mixup. Mixup: ``lam * x + (1 - lam) * x.flip(0)``, ``lam ~ Beta(mixup_alpha)``. CutMix: a box
    of side ``sqrt(1 - lam)`` times the image's, centred anywhere and clipped to the image, takes the flipped
    batch's pixels, and lambda becomes the share of the image outside the box.

    Args:
        x: float images ``(N, C, H, W)`` (not changed).
        y: integer labels ``(N,)``.
        num_classes: the width of the soft targets.
        mixup_alpha: Mixup's Beta concentration (0: no Mixup).
        cutmix_alpha: CutMix's Beta concentration (0: no CutMix).
        mix_prob: the probability that a batch is mixed.
        switch_prob: with both alphas above 0, the probability of CutMix instead of Mixup.
        generator: the random generator (on ``x``'s device).

    Returns:
        The mixed images (float32, the shape of ``x``) and the soft targets ``(N, num_classes)`` float32:
        ``lam * onehot(y) + (1 - lam) * onehot(y.flip(0))``, rows summing to one.
    """
    n, _, h, w = x.shape
    device = x.device
    u = torch.rand(4, dtype=torch.float64, device=device, generator=generator)  # mix?, cutmix?, box centre y, x
    one = torch.ones((), dtype=torch.float64, device=device)
    lam_mixup = sample_beta(mixup_alpha, generator, device) if mixup_alpha > 0 else one
    lam_cutmix = sample_beta(cutmix_alpha, generator, device) if cutmix_alpha > 0 else one
    # a Python bool where the settings decide, a tensor where a draw does (no GPU sync either way)
    cutmix = u[1] < switch_prob if mixup_alpha > 0 and cutmix_alpha > 0 else cutmix_alpha > 0
    lam = torch.where(u[0] < mix_prob, _choose(cutmix, lam_cutmix, lam_mixup), one)  # 1: an unmixed batch
    weight = (1 - lam).to(torch.float32)  # Mixup: lerp towards the flipped batch by 1 - lam everywhere
    if cutmix_alpha > 0:
        # timm's rand_bbox: cut = int(side * sqrt(1 - lam)), centre uniform over the image, cut // 2 either side
        ratio = (1 - lam).clamp_min(0).sqrt()
        half_h, half_w = torch.floor(h * ratio).long() // 2, torch.floor(w * ratio).long() // 2
        cy, cx = torch.floor(u[2] * h).long(), torch.floor(u[3] * w).long()
        top, bottom = (cy - half_h).clamp(0, h), (cy + half_h).clamp(0, h)
        left, right = (cx - half_w).clamp(0, w), (cx + half_w).clamp(0, w)
        rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
        box = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None, :]
        lam = _choose(cutmix, 1 - ((bottom - top) * (right - left)).double() / (h * w), lam)  # the box's real area
        # CutMix: the weight is the box, 0 or 1, so lerp copies exact pixels
        weight = _choose(cutmix, box.to(torch.float32), weight)
    mixed = torch.lerp(x, x.flip(0), weight)

    lam32 = lam.to(torch.float32).expand(n, 1)
    y = y.long()
    soft = torch.zeros(n, num_classes, dtype=torch.float32, device=device)
    soft.scatter_add_(1, y[:, None], lam32)
    soft.scatter_add_(1, y.flip(0)[:, None], 1 - lam32)
    return mixed, soft


def _choose(condition: torch.Tensor | bool, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``condition`` holds, else ``b``; a Python bool picks without a kernel."""
    if isinstance(condition, bool):
        return a if condition else b
    return torch.where(condition, a, b)


def random_erase(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al.) per image, vectorised: a box of each chosen image becomes normal noise.

    Each image is erased with probability ``prob``: up to ten boxes are drawn (area share in ``ERASE_SCALE``, log
    aspect ratio uniform in ``ERASE_RATIO``), the first that fits is placed uniformly, and its pixels become
    per-pixel standard normal noise (timm's ``pixel`` mode: noise in normalised units, i.e. random pixels of the
    data's statistics, rather than torchvision's constant 0).

    Args:
        x: normalised float images ``(N, C, H, W)`` (not changed).
        prob: the probability that an image is erased.
        generator: the random generator (on ``x``'s device).

    Returns:
        The images with their boxes erased.
    """
    n, _, h, w = x.shape
    device = x.device
    erase = torch.rand(n, device=device, generator=generator) < prob
    share = torch.empty(n, ERASE_ATTEMPTS, device=device).uniform_(*ERASE_SCALE, generator=generator)
    log_ratio = torch.empty(n, ERASE_ATTEMPTS, device=device).uniform_(
        math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), generator=generator
    )
    area, ratio = share * (h * w), log_ratio.exp()
    box_h, box_w = (area * ratio).sqrt().round().long(), (area / ratio).sqrt().round().long()
    fits = (box_h < h) & (box_w < w) & (box_h > 0) & (box_w > 0)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first attempt that fits (0 if none does)
    erase &= fits.any(dim=1)
    box_h, box_w = box_h.gather(1, first).squeeze(1), box_w.gather(1, first).squeeze(1)
    corner = torch.rand(n, 2, device=device, generator=generator)
    top = torch.floor(corner[:, 0] * (h - box_h + 1)).long()
    left = torch.floor(corner[:, 1] * (w - box_w + 1)).long()
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None]) & erase[:, None]
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (n, 1, h, w)
    # noise for every image keeps the draws fixed per batch and the GPU unsynchronised
    noise = torch.randn(x.shape, device=device, generator=generator)
    return torch.where(mask, noise, x)
