"""LightningDataModules, on-disk readers and batched augmentation."""

from .augment import AugmentConfig, BatchTransform
from .datamodules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    InMemoryDataModule,
    MNISTDataModule,
)
from .loader import TensorBatches
from .sources import ImageArrays

__all__ = [
    "AugmentConfig",
    "BatchTransform",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "FashionMNISTDataModule",
    "ImageArrays",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TensorBatches",
]
