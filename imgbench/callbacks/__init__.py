"""Lightning callbacks of imgbench."""

from .checkpoint import LastCheckpoint
from .interrupt import GracefulInterrupt, TrainingInterrupted

__all__ = ["GracefulInterrupt", "LastCheckpoint", "TrainingInterrupted"]
