"""The data path: DataModules, readers of the official formats, batched augmentation, streaming shards.

In memory: ``in_memory`` (the base DataModule), ``builtin`` (MNIST, Fashion-MNIST, CIFAR-10/100), ``image_folder``
(image folders and archives), ``readers`` (npz, torchvision MNIST files, CIFAR pickles), ``archives`` (safe
extraction), ``folders`` (listing and decoding image folders), ``arrays`` (:class:`ImageArrays`) and ``loader``
(:class:`TensorBatches`). Streamed: ``streaming`` (its DataModule), ``image_views`` (decoding and crops in loader
workers), ``shards`` (the format), ``shard_writer`` and ``sources`` (what ``imgbench.prepare`` writes and reads).
Both: ``batched`` (their base), ``augment`` (:class:`BatchTransform`), ``normalization`` and ``checks``; and
``inference`` (predict.py's images: listed, read and prepared as the run's evaluation data was).
"""

from .arrays import ImageArrays
from .augment import AugmentConfig, BatchTransform
from .batched import BatchedDataModule
from .builtin import CIFAR10DataModule, CIFAR100DataModule, FashionMNISTDataModule, MNISTDataModule
from .image_folder import ImageFolderDataModule
from .in_memory import InMemoryDataModule
from .loader import TensorBatches
from .streaming import StreamingDataModule

__all__ = [
    "AugmentConfig",
    "BatchTransform",
    "BatchedDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "FashionMNISTDataModule",
    "ImageArrays",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "StreamingDataModule",
    "TensorBatches",
]
