"""Initialise a model's patch-whitening layer from the training images when fitting starts."""

from __future__ import annotations

import logging

import lightning as L

from ..data.augment import center_crop

log = logging.getLogger(__name__)


class PatchWhitening(L.Callback):
    """Calls ``net.init_whitening(images)`` at fit start (e.g. :class:`imgbench.models.fastnet.FastNet`).

    The images are the first ``max_images`` training images, normalised as the model sees them
    (centre-cropped when the data crops). A model whose whitening is already set (a resumed run: the flag is
    in its state_dict) is left as it is.

    Args:
        max_images: how many training images estimate the patch covariance.
        eps: added to the eigenvalues before the inverse square root.
    """

    def __init__(self, max_images: int = 10000, eps: float = 5e-4) -> None:
        self.max_images = max_images
        self.eps = eps

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = getattr(pl_module, "net", pl_module)
        if not hasattr(net, "init_whitening"):
            raise TypeError(
                f"callbacks.patch_whitening needs a model with init_whitening(); {type(net).__name__} has none"
            )
        if bool(getattr(net, "whitening_ready", False)):
            return
        dm = trainer.datamodule
        images = dm.splits["train"].images[: self.max_images].to(pl_module.device)
        if dm.crop_size is not None:
            images = center_crop(images, dm.crop_size)
        net.init_whitening(dm.transform.normalize(images), eps=self.eps)
        log.info("patch whitening initialised from %d training images", len(images))
