"""Parameters and FLOPs of every shipped COCO config (model-zoo table).

    python tools/analysis/model_zoo.py [--configs CFG ...] [--skip-detector]

For each config: backbone parameters and FLOPs, whole-detector parameters
and FLOPs of the ``tensor`` forward, at the config's input size (SSDLite
320x320; FPN detectors 1333x800, padded to 1344x800), counted with
``mmengine.analysis.get_model_complexity_info`` (multiply-adds counted as
one FLOP, fvcore convention; RoIAlign and NMS are not counted). Prints a
Markdown table. This is a small internal helper; tools/analysis/get_flops.py
is the general tool.
"""
import argparse
import glob
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)


def input_size(cfg) -> tuple:
    """(H, W) of the network input for the config's test pipeline."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            w, h = step['scale']
            if step.get('keep_ratio', False):  # (1333, 800): long x short
                w, h = max(w, h), min(w, h)
            div = cfg.model.data_preprocessor.get('pad_size_divisor', 1)
            return (-(-h // div) * div, -(-w // div) * div)
    raise ValueError('no Resize step in the test pipeline')


def complexity(cfg, skip_detector: bool) -> dict:
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.analysis import get_model_complexity_info
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    h, w = input_size(cfg)
    x = torch.rand(1, 3, h, w)
    backbone = get_model_complexity_info(model.backbone, inputs=(x, ),
                                         show_table=False, show_arch=False)
    row = dict(size=f'{w}x{h}', bb_params=backbone['params'],
               bb_flops=backbone['flops'],
               det_params=sum(p.numel() for p in model.parameters()))
    if not skip_detector:
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            batch_input_shape=(h, w), scale_factor=(1., 1.)))

        class Tensor(torch.nn.Module):

            def __init__(self, det):
                super().__init__()
                self.det = det

            def forward(self, inputs):
                return self.det(inputs, [sample], mode='tensor')

        with torch.no_grad():
            det = get_model_complexity_info(Tensor(model), inputs=(x, ),
                                            show_table=False,
                                            show_arch=False)
        row['det_flops'] = det['flops']
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--configs', nargs='+', default=None)
    parser.add_argument('--skip-detector', action='store_true')
    args = parser.parse_args(argv)
    import warnings
    warnings.filterwarnings('ignore')
    import rexnet_det  # noqa: F401
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    configs = args.configs or sorted(
        p for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
        if '/demo/' not in p)
    print('| config | input | backbone params | backbone FLOPs | detector '
          'params | detector FLOPs |')
    print('|---|---|---|---|---|---|')
    for path in configs:
        row = complexity(Config.fromfile(path), args.skip_detector)
        flops = f'{row["det_flops"] / 1e9:.1f} G' if 'det_flops' in row \
            else '-'
        print(f'| {osp.relpath(path, ROOT)} | {row["size"]} | '
              f'{row["bb_params"] / 1e6:.2f} M | {row["bb_flops"] / 1e9:.2f} G'
              f' | {row["det_params"] / 1e6:.2f} M | {flops} |', flush=True)


if __name__ == '__main__':
    main()
