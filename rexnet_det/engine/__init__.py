from .checkpoint_hook import (ATOMIC_BACKEND, AtomicCheckpointHook,
                              AtomicLocalBackend, atomic_write)
from .hooks import DumpRankStateHook, NonFiniteLossError, NonFiniteLossHook

__all__ = [
    'ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend',
    'atomic_write', 'DumpRankStateHook', 'NonFiniteLossError',
    'NonFiniteLossHook'
]
