"""The fused eager limit: ReXNet-1.0x eval, BN-folded NCHW, BN-folded
channels_last, and aligned + folded channels_last in eager PyTorch, batch
1, interleaved; with torch.profiler's self CPU time per op of the eval and
fused forms (where the time the fusion cannot remove goes)."""
import copy
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn

from rexnet_det.models import ReXNet
from rexnet_det.models.utils import align_channels, fuse_model
from tools.bench.goals import clock
from tools.bench.sections.backbones import inverse, ratio, stats
from tools.lib.timing import Case, measure

NAME, ORDER = 'eager_forms', 20


def eager_forms(seed: int = 0) -> Dict[str, nn.Module]:
    """ReXNet-1.0x (to the 1280-ch conv) eval, BN-folded NCHW, BN-folded
    channels_last, and aligned + folded channels_last."""
    torch.manual_seed(seed)
    base = ReXNet(out_indices=(5, )).eval()
    return {
        'eval': base,
        'fused NCHW': fuse_model(copy.deepcopy(base), channels_last=False),
        'fused channels_last': fuse_model(copy.deepcopy(base)),
        'aligned + fused channels_last': fuse_model(
            align_channels(copy.deepcopy(base))),
    }


def eager_fused_rows(forms: Dict[str, nn.Module], sizes: Sequence[int],
                     threads: Sequence[int], rounds: int, calls: int
                     ) -> List[Dict[str, Any]]:
    """Each form timed interleaved per (threads, size); ``speedup`` = eval
    time over the form's time (median of rounds, both clocks)."""
    rows = []
    previous = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            for size in sizes:
                x = torch.randn(1, 3, size, size)

                def call(model, x=x):
                    with torch.no_grad():
                        return model(x)

                cases = [Case(name, lambda m=m: call(m), 1,
                              dict(form=name, size=size, threads=count))
                         for name, m in forms.items()]
                timings = measure(cases, rounds, calls, warmup=3)
                base = timings[cases[0].name]
                rows += [dict(c.info, **stats(timings[c.name]),
                              speedup=inverse(ratio(timings[c.name], base)))
                         for c in cases]
    finally:
        torch.set_num_threads(previous)
    return rows


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
    rows = eager_fused_rows(forms, opts.sizes, (1, ), opts.rounds,
                            opts.calls)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        size = opts.sizes[0]
        profiles = {name: torch_op_profile(forms[name], size,
                                           runs=2 if opts.quick else 20)
                    for name in ('eval', 'fused channels_last')}
    finally:
        torch.set_num_threads(previous)
    return dict(rows=rows, profile=dict(size=size, threads=1,
                                        ms_per_op=profiles))


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
    lines = ['| form | size | ms [min-max] | CPU ms | speed-up vs eval, '
             'CPU clock [min-max] |', '|---|---|---|---|---|']
    for r in result['rows']:
        s = r['speedup'][clock(r['threads'])]
        lines.append(f'| {r["form"]} | {r["size"]} | {r["ms"]:.2f} '
                     f'[{r["ms_min"]:.2f}-{r["ms_max"]:.2f}] | '
                     f'{r["cpu_ms"]:.2f} | {s["median"]:.2f} '
                     f'[{s["min"]:.2f}-{s["max"]:.2f}] |')
    prof = result['profile']
    names = list(prof['ms_per_op'])
    totals = {n: sum(prof['ms_per_op'][n].values()) for n in names}
    ops = ['| op | what | ' + ' | '.join(
        f'{n} ({totals[n]:.2f} ms)' for n in names) + ' |',
        '|---|---' + '|---' * len(names) + '|']
    for op, what in PROFILE_OPS:
        cells = [f'{prof["ms_per_op"][n].get(op, 0.0):.2f}' for n in names]
        ops.append(f'| `{op[6:]}` | {what} | ' + ' | '.join(cells) + ' |')
    return dict(eager_forms='\n'.join(lines), eager_profile='\n'.join(ops))
