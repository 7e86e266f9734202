"""Floor 3: training and evaluation machinery (hooks registered in mmdet's
scope): atomic checkpoints, a NaN guard, strict Runner loads, resume
checks."""
from .checkpoint_hook import (ATOMIC_BACKEND, AtomicCheckpointHook,
                              AtomicLocalBackend)
from .hooks import DumpRankStateHook, NonFiniteLossError, NonFiniteLossHook
from .resume_check import (RESET_OPTIMIZER, RESET_SCHEDULE, ResumeCheckHook,
                           ResumeMismatchError, check_resume)
from .strict_load_hook import StrictLoadHook

__all__ = [
    'ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend',
    'DumpRankStateHook', 'NonFiniteLossError', 'NonFiniteLossHook',
    'RESET_OPTIMIZER', 'RESET_SCHEDULE', 'ResumeCheckHook',
    'ResumeMismatchError', 'StrictLoadHook', 'check_resume'
]
