"""The fused eager limit, where the time goes: torch.profiler's self time
per op of ReXNet-1.0x's eval and fused (BN folded, channels_last) forms,
batch 1, one thread. The forms themselves are timed in the ``backbones``
section's group (its ``eager_forms`` table), so each speed-up is measured
once."""
import copy
from typing import Any, Dict

import torch
import torch.nn as nn

from rexnet_det.models import ReXNet
from rexnet_det.models.utils import fuse_model

NAME, ORDER = 'eager_forms', 20


def eager_forms(seed: int = 0) -> Dict[str, nn.Module]:
    """ReXNet-1.0x (to the 1280-ch conv) eval, and BN-folded
    channels_last (:func:`fuse_model`)."""
    torch.manual_seed(seed)
    base = ReXNet(out_indices=(5, )).eval()
    return {'eval': base,
            'fused channels_last': fuse_model(copy.deepcopy(base))}


def torch_op_profile(model: nn.Module, size: int, runs: int = 10
                     ) -> Dict[str, float]:
    """torch.profiler self CPU ms per forward by op of ``model`` at batch 1,
    largest first."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    totals = {e.key: e.self_cpu_time_total / 1e3 / runs
              for e in prof.key_averages()}
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def run(opts) -> Dict[str, Any]:
    forms = eager_forms()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        size = opts.sizes[0]
        profiles = {name: torch_op_profile(model, size,
                                           runs=2 if opts.quick else 20)
                    for name, model in forms.items()}
    finally:
        torch.set_num_threads(previous)
    return dict(profile=dict(size=size, threads=1, ms_per_op=profiles))


#: Ops of the profile table, with what they are in ReXNet.
PROFILE_OPS = (
    ('aten::_slow_conv2d_forward', '1x1 convs (NCHW GEMM path)'),
    ('aten::mkldnn_convolution', '3x3, depthwise and stem convs (oneDNN)'),
    ('aten::native_batch_norm', 'BatchNorm'),
    ('aten::silu_', 'SiLU'),
    ('aten::copy_', 'layout copies'),
    ('aten::mul', 'SE gate multiply'),
    ('aten::mean', 'SE pooling'),
)


def tables(result: Dict[str, Any]) -> Dict[str, str]:
    prof = result['profile']
    names = list(prof['ms_per_op'])
    totals = {n: sum(prof['ms_per_op'][n].values()) for n in names}
    ops = ['| op | what | ' + ' | '.join(
        f'{n} ({totals[n]:.2f} ms)' for n in names) + ' |',
        '|---|---' + '|---' * len(names) + '|']
    for op, what in PROFILE_OPS:
        cells = [f'{prof["ms_per_op"][n].get(op, 0.0):.2f}' for n in names]
        ops.append(f'| `{op[6:]}` | {what} | ' + ' | '.join(cells) + ' |')
    return dict(eager_profile='\n'.join(ops))
