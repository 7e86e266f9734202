"""onnxruntime's own profile of an ONNX file, summed by op type: where the
time goes after onnxruntime's graph optimisations (the backbone and the
detector latency tools both print it)."""
import json
import os.path as osp
import tempfile
from collections import defaultdict
from typing import Dict

import numpy as np

from rexnet_det.deploy.onnx import ort_session


def ort_op_times(path: str, feed: Dict[str, np.ndarray], threads: int = 1,
                 runs: int = 20) -> Dict[str, float]:
    """Milliseconds of kernel time per run by op type, largest first.

    Convs that run in onnxruntime's blocked NCHWc layout are listed as
    ``Conv [NCHWc]``; ``Conv`` and ``FusedConv`` (conv + activation) are
    the plain NCHW path. Threads do not spin (as in the timed runs).

    Args:
        path (str): The ONNX file.
        feed (dict): Input name -> array for ``session.run``.
        threads (int): onnxruntime intra-op threads. Default: 1.
        runs (int): Profiled runs to average over. Default: 20.
    """
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads,
                              profile_prefix=osp.join(tmp, 'ort_profile'))
        for _ in range(runs):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    totals: Dict[str, float] = defaultdict(float)
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith(
                '_kernel_time'):
            op = event['args']['op_name']
            if 'nchwc' in event['name']:  # the layout transformer's nodes
                op += ' [NCHWc]'
            totals[op] += event['dur'] / 1e3 / runs
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
