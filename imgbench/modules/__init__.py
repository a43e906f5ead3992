"""LightningModules: the generic classifier (and subclasses where a study needs more)."""

from .classifier import ImageClassifier

__all__ = ["ImageClassifier"]
