"""Floor 3: training and evaluation machinery (hooks registered in mmdet's
scope): atomic checkpoints, a NaN guard, strict Runner loads."""
from .checkpoint_hook import (ATOMIC_BACKEND, AtomicCheckpointHook,
                              AtomicLocalBackend)
from .hooks import DumpRankStateHook, NonFiniteLossError, NonFiniteLossHook
from .strict_load_hook import StrictLoadHook

__all__ = [
    'ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend',
    'DumpRankStateHook', 'NonFiniteLossError', 'NonFiniteLossHook',
    'StrictLoadHook'
]
