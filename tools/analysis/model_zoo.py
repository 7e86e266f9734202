"""Parameters and FLOPs of every shipped COCO config (the model-zoo table)::

    python tools/analysis/model_zoo.py [--configs CFG ...]

Counted with the package's one counter (mmengine's FlopAnalyzer, one
multiply-add = one FLOP, conv + linear MACs as in the paper) on the
detector's ``tensor`` forward at the config's test input size (SSDLite
320x320; FPN detectors 1333x800 padded to 1344x800); RoIAlign and NMS are
not counted. Prints a Markdown table.
"""
import argparse
import glob
import os.path as osp
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import rexnet_det  # noqa: E402,F401
from tools.lib.complexity import detector_complexity  # noqa: E402


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', default=None)
    args = parser.parse_args(argv)
    configs = args.configs or sorted(
        p for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(p)) not in ('demo', '_base_'))
    print('| config | input | backbone params | backbone FLOPs | detector '
          'params | detector FLOPs |')
    print('|---|---|---|---|---|---|')
    rows = []
    for path in configs:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            row = detector_complexity(path)
        rows.append(row)
        backbone = row['backbone']
        print(f'| {osp.relpath(path, ROOT)} | {row["width"]}x{row["height"]}'
              f' | {backbone["params"] / 1e6:.2f} M | '
              f'{backbone["macs"] / 1e9:.2f} G | {row["params"] / 1e6:.2f} M'
              f' | {row["macs"] / 1e9:.1f} G |', flush=True)
    return rows


if __name__ == '__main__':
    main()
