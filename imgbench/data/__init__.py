"""The data path: in-memory DataModules, readers of the official formats, batched augmentation.

Modules: ``in_memory`` (the base DataModule), ``builtin`` (MNIST, Fashion-MNIST, CIFAR-10/100), ``image_folder``
(image folders and archives), ``readers`` (npz, torchvision MNIST files, CIFAR pickles), ``archives`` (safe
extraction), ``folders`` (listing and decoding image folders), ``arrays`` (:class:`ImageArrays`), ``checks``
(constructor argument checks), ``loader`` (:class:`TensorBatches`) and ``augment`` (:class:`BatchTransform`); the streaming path: ``streaming`` (its DataModule), ``image_views``
(per-image decoding and crops in loader workers), ``shards`` (the format), ``shard_writer`` and ``sources``
(``imgbench.prepare``'s writing and source layouts); ``batched`` is the base of both DataModules.
"""

from .arrays import ImageArrays
from .augment import AugmentConfig, BatchTransform
from .builtin import CIFAR10DataModule, CIFAR100DataModule, FashionMNISTDataModule, MNISTDataModule
from .image_folder import ImageFolderDataModule
from .in_memory import InMemoryDataModule
from .streaming import StreamingDataModule
from .loader import TensorBatches

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
    "StreamingDataModule",
    "TensorBatches",
]
