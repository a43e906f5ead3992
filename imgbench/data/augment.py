"""Batched augmentation and normalisation on uint8 image tensors, on whatever device the batch is on.

No per-image Python work (but for the opt-in auto-augment policies, whose torchvision ops take one image at a
time): one call transforms a whole ``(N, C, H, W)`` batch. Geometric transforms run on
uint8 (cheap), then the batch becomes float and is normalised. Randomness comes from the transform's own
``torch.Generator`` so that it can be seeded per process (different on every DDP rank) and saved in
checkpoints. Per-image auto-augment policies live in :mod:`~imgbench.data.policies`, Mixup, CutMix and random
erasing in :mod:`~imgbench.data.mixing`; they draw from the same generators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import torch
import torch.nn.functional as F

from .mixing import mix_batch, random_erase
from .policies import AUTO_POLICIES, RANDAUGMENT_MAX_MAGNITUDE, auto_augment, auto_policy

# AlexNet's "fancy PCA" lighting: the eigen decomposition of ImageNet's RGB covariance (pixels in [0, 1]),
# the values every reimplementation uses (fb.resnet.torch, timm).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

PAD_MODES = ("zeros", "reflect", "edge")
_RATES = ("mixup_alpha", "cutmix_alpha")  # AugmentConfig's Beta concentrations
_PROBABILITIES = ("mix_prob", "switch_prob", "erase_prob")


@dataclass
class AugmentConfig:
    """Training-time augmentation, applied to whole batches.

    Attributes:
        crop_padding: random crop of the original size after padding by this many pixels (0: off).
        shift: random shift by up to this fraction of height and width (Keras ``width_shift_range``).
        pad_mode: how crop and shift fill the border: zeros, reflect or edge (Keras's 'nearest').
        flip: random horizontal flip with probability 1/2.
        lighting: standard deviation of AlexNet's PCA colour noise (0: off; the paper uses 0.1).
        auto: a per-image auto-augment policy on the uint8 images: none, trivialaugment (TrivialAugment Wide) or
            randaugment.
        randaugment_ops: RandAugment's operations per image.
        randaugment_magnitude: RandAugment's magnitude, 0..30.
        mixup_alpha: Mixup's Beta concentration (0: off; 0.2 or 0.8 in modern recipes).
        cutmix_alpha: CutMix's Beta concentration (0: off; 1.0 in modern recipes).
        mix_prob: the probability that a training batch is mixed (with Mixup or CutMix on).
        switch_prob: with both alphas above 0, the probability of CutMix rather than Mixup for a batch.
        erase_prob: the probability that an image gets a random-erasing box of noise (0: off).

    Raises:
        ValueError: a value of the wrong type or out of range.
    """

    crop_padding: int = 0
    shift: float = 0.0
    pad_mode: str = "zeros"
    flip: bool = False
    lighting: float = 0.0
    auto: str = "none"
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    erase_prob: float = 0.0

    def __post_init__(self) -> None:
        for key, kind, what in (
            ("crop_padding", Integral, "a whole number"),
            ("shift", Real, "a number"),
            ("lighting", Real, "a number"),
            ("randaugment_ops", Integral, "a whole number"),
            ("randaugment_magnitude", Integral, "a whole number"),
            *((key, Real, "a number") for key in _RATES + _PROBABILITIES),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"augment.{key} must be {what}, got {value!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"augment.flip must be true or false, got {self.flip!r}")
        if self.crop_padding < 0 or not 0.0 <= self.shift < 1.0 or not self.lighting >= 0:
            raise ValueError("augment: crop_padding >= 0, 0 <= shift < 1 and lighting >= 0 are required")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"augment.pad_mode must be one of {', '.join(PAD_MODES)}, got '{self.pad_mode}'")
        if self.auto not in AUTO_POLICIES:
            raise ValueError(f"augment.auto must be one of {', '.join(AUTO_POLICIES)}, got {self.auto!r}")
        if self.randaugment_ops < 1:
            raise ValueError(f"augment.randaugment_ops must be >= 1, got {self.randaugment_ops}")
        if not 0 <= self.randaugment_magnitude <= RANDAUGMENT_MAX_MAGNITUDE:
            bound, value = RANDAUGMENT_MAX_MAGNITUDE, self.randaugment_magnitude
            raise ValueError(f"augment.randaugment_magnitude must be in 0..{bound}, got {value}")
        for key in _RATES:  # `not >=` also refuses NaN
            if not 0 <= getattr(self, key) < float("inf"):
                raise ValueError(f"augment.{key} must be a finite number >= 0, got {getattr(self, key)!r}")
        for key in _PROBABILITIES:
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"augment.{key} must be a probability in [0, 1], got {getattr(self, key)!r}")

    @property
    def mixing(self) -> bool:
        """Whether Mixup or CutMix is on (training batches then carry soft targets)."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(
            self.crop_padding
            or self.shift
            or self.flip
            or self.lighting
            or self.auto != "none"
            or self.erase_prob
            or self.mixing
        )


_TORCH_PAD = {"zeros": "constant", "reflect": "reflect", "edge": "replicate"}


def random_translate(
    x: torch.Tensor,
    max_dy: int,
    max_dx: int,
    mode: str = "zeros",
    generator: torch.Generator | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """Shift each image by a random whole number of pixels (and, with ``flip``, mirror it at random).

    Pads by ``(max_dy, max_dx)`` (border filled by ``mode``) and takes one random crop of the original size per
    image: a random integer shift in ``[-max, max]``; with ``flip``, each image is also mirrored with
    probability 1/2 (the same draws as :func:`random_flip` after this function without it).

    Crop and flip are one gather from the padded batch (an index per output pixel), which on a CPU costs
    less than a strided window view or a ``where`` over the flipped copy.

    Args:
        x: images ``(N, C, H, W)``, any dtype.
        max_dy: the largest vertical shift.
        max_dx: the largest horizontal shift.
        mode: how the border is filled: ``zeros``, ``reflect`` or ``edge``.
        generator: the random generator (on ``x``'s device).
        flip: also mirror each image with probability 1/2.

    Returns:
        The shifted (and mirrored) images, the shape and dtype of ``x``.
    """
    n, c, h, w = x.shape
    device = x.device
    if max_dy or max_dx:
        dy = torch.randint(0, 2 * max_dy + 1, (n,), device=device, generator=generator)
        dx = torch.randint(0, 2 * max_dx + 1, (n,), device=device, generator=generator)
    else:  # a flip only: no shift drawn, so the flips are random_flip's
        dy = dx = torch.zeros(n, dtype=torch.long, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        mirrored = torch.rand(n, device=device, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], (w - 1) - cols, cols)
    padded = F.pad(x, (max_dx, max_dx, max_dy, max_dy), mode=_TORCH_PAD[mode]) if max_dy or max_dx else x
    width = w + 2 * max_dx
    rows = torch.arange(h, device=device)[None, :] + dy[:, None]  # (n, h)
    index = rows[:, :, None] * width + (cols + dx[:, None])[:, None, :]  # (n, h, w) into the padded image
    flat = padded.reshape(n, c, -1)
    return flat.gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def random_crop(x: torch.Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """One random ``size`` crop per image (AlexNet's 224 crops of 256 images), read in one gather.

    Args:
        x: images ``(N, C, H, W)``.
        size: the crop's ``(h, w)``, at most the images' size.
        generator: the random generator (on ``x``'s device).

    Returns:
        The crops ``(N, C, h, w)``.
    """
    n, _, height, width = x.shape
    h, w = size
    windows = x.unfold(2, h, 1).unfold(3, w, 1)  # (n, c, H-h+1, W-w+1, h, w), a view
    dy = torch.randint(0, height - h + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, width - w + 1, (n,), device=x.device, generator=generator)
    return windows[torch.arange(n, device=x.device), :, dy, dx]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` crop of every image.

    Args:
        x: images ``(N, C, H, W)``.
        size: the crop's ``(h, w)``, at most the images' size.

    Returns:
        A view ``(N, C, h, w)`` of ``x``.
    """
    h, w = size
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top : top + h, left : left + w]


EVAL_VIEWS = ("one", "flip", "ten_crop")


def eval_views(x: torch.Tensor, views: str, size: tuple[int, int] | None) -> torch.Tensor:
    """The evaluation input: ``(N, C, h, w)`` for one view, else ``(N, V, C, h, w)`` for the model to average.

    Args:
        x: images ``(N, C, H, W)``.
        views: ``one``: the centre crop (or the whole image without ``size``); ``flip``: that and its mirror
            image (2 views); ``ten_crop``: the four corner crops and the centre crop, and their mirror images
            (AlexNet's 10 views).
        size: the crop's ``(h, w)``, or None for whole images.

    Returns:
        The views.

    Raises:
        ValueError: ``ten_crop`` without ``size``.
    """
    if views == "ten_crop":
        if size is None:
            raise ValueError("eval_views=ten_crop needs data.crop_size smaller than the images")
        h, w = size
        bottom, right = x.shape[2] - h, x.shape[3] - w
        crops = [
            x[:, :, :h, :w],
            x[:, :, :h, right:],
            x[:, :, bottom:, :w],
            x[:, :, bottom:, right:],
            center_crop(x, size),
        ]
        crops += [c.flip(3) for c in crops]
        return torch.stack(crops, dim=1)
    x = center_crop(x, size) if size is not None else x
    if views == "flip":
        return torch.stack([x, x.flip(3)], dim=1)
    return x


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2.

    Args:
        x: images ``(N, C, H, W)``.
        generator: the random generator (on ``x``'s device).

    Returns:
        The images, each flipped or not.
    """
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def lighting_offsets(
    n: int, std: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """AlexNet's PCA colour noise: one RGB offset per image.

    Args:
        n: the number of images.
        std: the standard deviation of the noise along each principal component.
        device: where the offsets are made.
        generator: the random generator (on ``device``).

    Returns:
        The offsets ``(n, 3)``, in [0, 1] pixel units.
    """
    eigval = torch.tensor(IMAGENET_EIGVAL, device=device)
    eigvec = torch.tensor(IMAGENET_EIGVEC, device=device)
    alpha = torch.randn(n, 3, device=device, generator=generator) * std
    return (alpha * eigval) @ eigvec.T


class BatchTransform:
    """uint8 batch -> augmented (when training) and normalised float batch.

    The float conversion and normalisation are fused into one multiply-add.

    Args:
        mean: per-channel means, in [0, 1] units.
        std: per-channel standard deviations, in [0, 1] units.
        augment: the training augmentation (default: none).
        seed: the seed of the transform's random generators.
        crop_size: train on random crops and evaluate on centre crops of this ``(h, w)``; None: whole images.
        views: the evaluation views (see :func:`eval_views`).
        train_crop: take a random ``crop_size`` crop of training batches (false where the loader already
            cropped each image, as the streaming path's random-resized crops).

    Raises:
        ValueError: unknown ``views``.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentConfig | None = None,
        seed: int = 0,
        crop_size: tuple[int, int] | None = None,
        views: str = "one",
        train_crop: bool = True,
    ) -> None:
        if views not in EVAL_VIEWS:
            raise ValueError(f"eval views must be one of {', '.join(EVAL_VIEWS)}, got '{views}'")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.augment = augment or AugmentConfig()
        self.seed = seed
        self.crop_size = crop_size
        self.views = views
        self.train_crop = train_crop
        self._generators: dict[torch.device, torch.Generator] = {}
        self._saved_state: dict[str, torch.Tensor] | None = None
        self._affine_cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._policy = auto_policy(self.augment.auto, self.augment.randaugment_ops, self.augment.randaugment_magnitude)

    def generator(self, device: torch.device) -> torch.Generator:
        """This transform's random generator on ``device`` (created on first use, seeded by ``seed``)."""
        g = self._generators.get(device)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            key = str(device)
            if self._saved_state and key in self._saved_state:
                g.set_state(self._saved_state[key])
            self._generators[device] = g
        return g

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The states of the random generators, by device name (saved in checkpoints)."""
        return {str(d): g.get_state() for d, g in self._generators.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from saved generator states (each device's generator takes its state when next used).

        Args:
            state: what :meth:`state_dict` returned.
        """
        self._saved_state = dict(state)
        self._generators.clear()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 ``(x / 255 - mean) / std`` (also for ``(N, V, C, H, W)`` view stacks)."""
        if x.ndim == 5:
            n, v = x.shape[:2]
            return self.normalize(x.flatten(0, 1)).unflatten(0, (n, v))
        scale, shift = self._affine(x.device, x.shape[1])
        out = x.to(torch.float32, copy=True)  # a copy even of a float input, which is then changed in place
        return torch.addcmul(shift, out, scale, out=out)  # in place: one batch-sized allocation, not two

    def _affine(self, device: torch.device, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalisation as ``x * scale + shift`` per channel, built once per device."""
        key = (str(device), channels)
        cached = self._affine_cache.get(key)
        if cached is None:
            scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=device).view(1, channels, 1, 1)
            shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=device)
            cached = self._affine_cache[key] = (scale, shift.view(1, channels, 1, 1))
        return cached

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Transform one batch.

        Training runs: random crop, shift/crop and flip, the auto-augment policy (on uint8), normalisation,
        lighting, random erasing; Mixup and CutMix need the labels and are :meth:`mix`.

        Args:
            x: uint8 images ``(N, C, H, W)``.
            train: augment (and random-crop) for training; otherwise the evaluation views.

        Returns:
            float32 images: ``(N, C, h, w)``, or ``(N, V, C, h, w)`` for several evaluation views.
        """
        aug = self.augment
        if not train:
            return self.normalize(eval_views(x, self.views, self.crop_size))
        g = self.generator(x.device)
        if self.crop_size is not None and self.train_crop:
            x = random_crop(x, self.crop_size, g)
        if not aug.active:
            return self.normalize(x)
        mirrored = None
        if aug.crop_padding or aug.shift:
            h, w = x.shape[2], x.shape[3]
            max_dy = aug.crop_padding + round(aug.shift * h)
            max_dx = aug.crop_padding + round(aug.shift * w)
            x = random_translate(x, max_dy, max_dx, aug.pad_mode, g, flip=aug.flip)
        elif aug.flip:  # random_flip's draws; the chosen images are mirrored in place after normalising
            mirrored = torch.rand(x.shape[0], device=x.device, generator=g) < 0.5
        if self._policy is not None:
            if mirrored is not None:  # the policy's ops are not mirror-symmetric: flip first, on uint8
                x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
                mirrored = None
            x = auto_augment(x, self._policy, g)
        out = self.normalize(x)
        if mirrored is not None:
            out[mirrored] = out[mirrored].flip(3)
        if aug.lighting and x.shape[1] == 3:
            # an offset in [0, 1] pixel units becomes offset / std after normalisation
            rgb = lighting_offsets(x.shape[0], aug.lighting, x.device, g)
            out += (rgb / torch.tensor(self.std, device=x.device))[:, :, None, None]
        if aug.erase_prob:
            out = random_erase(out, aug.erase_prob, g)
        return out

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup or CutMix a transformed training batch (the last training step, after :meth:`__call__`).

        Args:
            x: float images ``(N, C, H, W)`` from :meth:`__call__` with ``train=True``.
            y: their integer labels ``(N,)``.
            num_classes: the number of classes.

        Returns:
            The mixed images and float32 soft targets ``(N, num_classes)``, rows summing to one (one-hot rows
            when Mixup and CutMix are off).
        """
        aug = self.augment
        g = self.generator(x.device)
        return mix_batch(x, y, num_classes, aug.mixup_alpha, aug.cutmix_alpha, aug.mix_prob, aug.switch_prob, g)
