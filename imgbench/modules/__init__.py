"""LightningModules: the generic classifier (and subclasses where a study needs more)."""

from .classifier import ImageClassifier
from .hashing import HashClassifier, has_hash_codes

__all__ = ["HashClassifier", "ImageClassifier", "has_hash_codes"]
