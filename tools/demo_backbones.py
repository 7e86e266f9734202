"""Build every released ReXNet width, print its multi-scale feature shapes,
parameter counts and a classifier forward (the backbone part of the demo)."""
import time

import torch

from rexnet_det import ReXNet, ReXNetClassifier
from rexnet_det.models import VARIANTS


def main(size: int = 320) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    print(f'ReXNet backbones, input 1x3x{size}x{size}, all six taps')
    print(f'{"model":<18}{"params(cls)":>12}  taps (C x H x W)')
    for variant in VARIANTS.values():
        arch, width = variant.arch, variant.width_mult
        backbone = ReXNet(width_mult=width, arch=arch,
                          out_indices=(0, 1, 2, 3, 4, 5)).eval()
        classifier = ReXNetClassifier(width_mult=width, arch=arch).eval()
        with torch.no_grad():
            taps = backbone(x)
            t0 = time.perf_counter()
            logits = classifier(torch.rand(1, 3, 224, 224))
            ms = (time.perf_counter() - t0) * 1e3
        params = sum(p.numel() for p in classifier.parameters()) / 1e6
        shapes = ' '.join(f'{t.shape[1]}x{t.shape[2]}x{t.shape[3]}'
                          for t in taps)
        print(f'{backbone.arch_spec.name:<18}{params:>10.2f}M  {shapes}  '
              f'| logits {tuple(logits.shape)} in {ms:.0f} ms')


if __name__ == '__main__':
    main()
