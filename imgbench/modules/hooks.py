"""Per-batch Lightning hooks that do nothing, skipped instead of called.

At every batch Lightning calls each per-batch hook of the LightningModule and of every callback (a profiler
context, a name string and the call), whether or not the class implements it: with the default ten callbacks that
is some 70 calls a training step, a noticeable part of a small model's step at batch 4 (benchmarks/results.md).
Lightning skips a hook that is not callable (``lightning.pytorch.trainer.call``: ``if callable(fn)``), so a hook
that an object's class leaves as Lightning's empty default is set to None on that object.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TypeVar

import lightning as L

F = TypeVar("F", bound=Callable)

TRAIN_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
EVAL_BATCH_HOOKS = (
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)
BATCH_HOOKS = TRAIN_BATCH_HOOKS + EVAL_BATCH_HOOKS


def skip_empty_hooks(obj: object, base: type, hooks: Iterable[str] = BATCH_HOOKS) -> list[str]:
    """Set each of ``hooks`` that ``obj``'s class inherits unchanged from ``base`` to None on ``obj``.

    The class keeps its methods (``super()`` calls and other instances are unaffected); only this object's
    attribute lookup finds None, which Lightning's hook calls pass over.

    Args:
        obj: a callback or a LightningModule.
        base: the class whose empty hooks are skipped (``L.Callback``, ``L.LightningModule``).
        hooks: the hook names (default: the per-batch hooks; none of them returns anything). A LightningModule's
            evaluation batch hooks must stay: Lightning reads their signatures.

    Returns:
        The hooks set to None.
    """
    skipped = []
    for name in hooks:
        if getattr(type(obj), name, None) is getattr(base, name):
            setattr(obj, name, None)
            skipped.append(name)
    return skipped


def skip_empty_callback_hooks(callbacks: Iterable[L.Callback]) -> None:
    """:func:`skip_empty_hooks` for each of a trainer's callbacks.

    Args:
        callbacks: the trainer's callbacks (``trainer.callbacks``).
    """
    for cb in callbacks:
        skip_empty_hooks(cb, L.Callback)


def signature_once(fn: F) -> F:
    """Compute ``fn``'s signature once and keep it on the function, for a step function Lightning inspects per step.

    Lightning asks at every training step whether ``training_step`` takes ``batch_idx`` (``inspect.getfullargspec``,
    some 20 microseconds); ``inspect`` returns a function's ``__signature__`` as it is instead of rebuilding it.

    Args:
        fn: the function (its signature must not change afterwards).

    Returns:
        The same function.
    """
    fn.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return fn
