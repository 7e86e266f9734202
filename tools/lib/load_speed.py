"""How long reading a checkpoint takes through the safe loader, against
torch's own ``torch.load`` on the same file, interleaved.

The safe loader adds a 512-byte header read, the allowlist context and a
walk that swaps the numpy stand-ins for real arrays; this measures what
that costs on a realistic file (a Mask R-CNN-ReXNet training checkpoint
with SGD momentum, message hub and schedulers).
"""
import statistics
import time
from typing import Callable, Dict, List

import torch


def make_training_checkpoint(path: str) -> int:
    """Write a checkpoint shaped like one a Runner saves for Mask R-CNN-
    ReXNet-1.0x (weights, SGD momentum, message hub with HistoryBuffers,
    schedulers). Returns its size in bytes."""
    import os

    import numpy as np
    from mmengine.logging import HistoryBuffer

    from rexnet_det.utils.io import atomic_output
    from .detectors import REXNET_MASK_RCNN, build_detector, load_config
    model = build_detector(load_config(REXNET_MASK_RCNN))
    state = model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    hub = {'log_scalars': {f'train/loss_{i}': HistoryBuffer(
        list(np.linspace(1, 0, 500)), [1] * 500) for i in range(8)},
        'runtime_info': {'iter': 7330, 'epoch': 1}}
    checkpoint = dict(
        meta=dict(epoch=1, iter=7330, seed=0,
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict=state, optimizer=optimizer.state_dict(),
        message_hub=hub,
        param_schedulers=[dict(last_step=7330, base_values=[0.02],
                               _last_value=[0.02])])
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)
    return os.path.getsize(path)


def _numpy_reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def compare_loading(path: str, rounds: int = 9
                    ) -> Dict[str, Dict[str, float]]:
    """Median / min / max seconds per load, interleaved per round.

    Rows: ``torch.load(weights_only=False)`` (what mmengine did before
    torch 2.6: unsafe); ``torch.load(weights_only=True)`` with the real
    numpy / mmengine classes allowlisted (the loader rexnet_det had before
    the stand-ins, which let forged numpy objects through); ours
    (:func:`load_checkpoint_file`).
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    from rexnet_det.checkpoint import load_checkpoint_file
    real = [HistoryBuffer, np.ndarray, np.dtype,
            (_numpy_reconstruct(), 'numpy._core.multiarray._reconstruct'),
            (lambda obj, name: getattr(obj, name), 'builtins.getattr'),
            *{type(np.dtype(t)) for t in ('f4', 'f8', 'i8', 'b1')}]

    def plain_allowlist():
        with torch.serialization.safe_globals(real):
            return torch.load(path, map_location='cpu', weights_only=True)

    loaders: Dict[str, Callable] = {
        'torch.load(weights_only=False)':
        lambda: torch.load(path, map_location='cpu', weights_only=False),
        'weights_only + plain allowlist': plain_allowlist,
        'rexnet_det load_checkpoint_file':
        lambda: load_checkpoint_file(path),
    }
    times: Dict[str, List[float]] = {name: [] for name in loaders}
    for name, load in loaders.items():  # warm the page cache
        load()
    for _ in range(rounds):
        for name, load in loaders.items():
            start = time.perf_counter()
            out = load()
            times[name].append(time.perf_counter() - start)
            assert isinstance(out['message_hub']['log_scalars'][
                'train/loss_0'], HistoryBuffer)
    return {name: dict(median=statistics.median(t), min=min(t), max=max(t))
            for name, t in times.items()}
