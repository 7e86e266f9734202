"""Reading a Mask R-CNN-ReXNet training checkpoint (weights, SGD momentum,
message hub, schedulers): unsafe ``torch.load``, ``weights_only`` with the
real classes allowlisted, and the package's :func:`load_checkpoint_file`,
interleaved (:func:`tools.lib.load_speed.compare_loading`)."""
import os
import os.path as osp
import tempfile
from typing import Any, Dict

from tools.lib.load_speed import compare_loading, make_training_checkpoint

NAME, ORDER = 'checkpoint_load', 70


def run(opts) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'mask_rcnn_training.pth')
        make_training_checkpoint(path)
        rounds = 1 if opts.quick else 2 * opts.rounds + 1
        return dict(mib=os.path.getsize(path) / 2**20, rounds=rounds,
                    loaders=compare_loading(path, rounds))


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    lines = ['| loader | median ms [min-max] | vs unsafe torch.load |',
             '|---|---|---|']
    loaders = result['loaders']
    base = loaders['torch.load(weights_only=False)']['median']
    for name, r in loaders.items():
        lines.append(f'| {name} | {r["median"] * 1e3:.1f} '
                     f'[{r["min"] * 1e3:.1f}-{r["max"] * 1e3:.1f}] | '
                     f'{r["median"] / base:.2f}x |')
    lines += ['', f'{result["mib"]:.0f} MiB checkpoint, {result["rounds"]} '
              'interleaved rounds.']
    return dict(checkpoint_load='\n'.join(lines))
