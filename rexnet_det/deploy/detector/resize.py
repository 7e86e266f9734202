"""The test-time resize rule of a config, and applying it to an image.

The exported graph takes an image already resized to its fixed input size
(``H, W``). Two rules cover mmdet's single-stage configs:

* ``stretch`` (``Resize(scale=(w, h), keep_ratio=False)``, e.g. SSDLite at
  320x320): resize to exactly ``W x H``. Identical to mmdet's pipeline.
* ``keep_ratio`` (``Resize(scale=(1333, 800), keep_ratio=True)``, e.g.
  RetinaNet): rescale as mmdet does (long side <= max(scale), short side <=
  min(scale)); if that does not fit the ``H x W`` canvas (a portrait image
  in a landscape canvas), rescale to fit it instead. Then pad bottom/right
  to the canvas with the value that normalises to the data preprocessor's
  ``pad_value`` (mmdet pads after normalising). mmdet pads only to a
  multiple of its ``pad_size_divisor``, so detections near the bottom and
  right border can differ slightly from mmdet's (the network sees more
  padding); ``tools/deploy/verify.py`` measures it.

Resizing uses mmcv (``imresize`` / ``imrescale`` with the config's
interpolation and backend), as mmdet's ``Resize`` does.
"""
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

MODES = ('stretch', 'keep_ratio')
# Pipeline steps that do not change the pixels the network sees.
_PASSIVE = ('LoadImageFromFile', 'CheckedLoadImageFromFile',
            'LoadImageFromNDArray', 'LoadAnnotations', 'PackDetInputs')


@dataclass
class PreparedImage:
    """An image as the graph takes it, and how to map boxes back.

    Attributes:
        input (np.ndarray): ``[3, H, W]`` float32 RGB 0-255.
        scale_factor (tuple[float, float]): ``(w_scale, h_scale)``, resized
            over original size (as mmdet's ``scale_factor``).
        img_shape (tuple[int, int]): ``(h, w)`` of the resized image before
            padding.
        ori_shape (tuple[int, int]): ``(h, w)`` of the original image.
    """
    input: np.ndarray
    scale_factor: Tuple[float, float]
    img_shape: Tuple[int, int]
    ori_shape: Tuple[int, int]


@dataclass
class ResizeRule:
    """How an image becomes the graph's ``[3, H, W]`` input.

    Attributes:
        mode (str): ``'stretch'`` or ``'keep_ratio'`` (see module doc).
        size (list[int]): ``[H, W]`` of the graph input.
        scale (list[int]): The config's ``Resize.scale`` ``[w, h]``
            (for ``keep_ratio``: the long/short side limits).
        interpolation (str): mmcv interpolation. Default: ``'bilinear'``.
        backend (str): mmcv resize backend. Default: ``'cv2'``.
        pad_value (list[float]): RGB value of padded pixels (0-255 scale).
    """
    mode: str
    size: List[int]
    scale: List[int]
    interpolation: str = 'bilinear'
    backend: str = 'cv2'
    pad_value: Optional[List[float]] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'resize mode must be one of {MODES}, got '
                             f'{self.mode!r}')
        self.size = [int(s) for s in self.size]
        self.scale = [int(s) for s in self.scale]
        if self.pad_value is None:
            self.pad_value = [0.0, 0.0, 0.0]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def _rescaled_size(self, h: int, w: int) -> Tuple[int, int, float]:
        """mmcv's ``rescale_size`` rule, or the canvas-fitting factor."""
        import mmcv
        new_w, new_h = mmcv.rescale_size((w, h), tuple(self.scale))
        canvas_h, canvas_w = self.size
        if new_w <= canvas_w and new_h <= canvas_h:
            return new_h, new_w, 0.0
        factor = min(canvas_h / h, canvas_w / w)
        return int(h * factor + 0.5), int(w * factor + 0.5), factor

    def apply(self, image: np.ndarray) -> PreparedImage:
        """Resize (and pad) a BGR uint8 ``[h, w, 3]`` image.

        Returns:
            PreparedImage: The graph input and the mapping back.
        """
        import mmcv
        h, w = image.shape[:2]
        height, width = self.size
        if self.mode == 'stretch':
            resized = mmcv.imresize(image, (width, height),
                                    interpolation=self.interpolation,
                                    backend=self.backend)
        else:
            new_h, new_w, factor = self._rescaled_size(h, w)
            resized = mmcv.imrescale(image, factor or tuple(self.scale),
                                     interpolation=self.interpolation,
                                     backend=self.backend)
        new_h, new_w = resized.shape[:2]
        canvas = np.empty((3, height, width), np.float32)
        canvas[...] = np.asarray(self.pad_value, np.float32)[:, None, None]
        # BGR -> RGB, HWC -> CHW; mmdet converts the uint8 image the same way
        canvas[:, :new_h, :new_w] = resized[..., ::-1].transpose(2, 0, 1)
        return PreparedImage(canvas, (new_w / w, new_h / h), (new_h, new_w),
                             (h, w))


def _steps(pipeline: Sequence[dict]) -> List[dict]:
    return [dict(step) for step in pipeline]


def rule_from_pipeline(pipeline: Sequence[dict], size: Optional[
        Sequence[int]], divisor: int, pad_value: Sequence[float]
        ) -> ResizeRule:
    """Read the resize rule from a config's test pipeline.

    Args:
        pipeline (list[dict]): The test pipeline (``Resize`` must be in it).
        size (Sequence[int], optional): ``(H, W)`` of the graph input.
            Default: the pipeline's size (for ``keep_ratio``: the landscape
            canvas ``(short, long)`` rounded up to `divisor`).
        divisor (int): Size multiple of the default canvas.
        pad_value (Sequence[float]): RGB 0-255 value of padded pixels.

    Raises:
        ValueError: The pipeline has no ``Resize`` with a ``scale``, or a
            step that changes pixels in a way the runtime does not
            reproduce (the message names it).
    """
    resize = None
    for step in _steps(pipeline):
        kind = str(step.get('type', '')).split('.')[-1]
        if kind == 'Resize' and resize is None:
            resize = step
        elif kind not in _PASSIVE:
            raise ValueError(f'test pipeline step {kind!r} is not supported '
                             f'by the deployment runtime (supported: Resize '
                             f'and {", ".join(_PASSIVE)})')
    if resize is None or resize.get('scale') is None:
        raise ValueError('the test pipeline needs a Resize with a scale, got '
                         f'{resize!r}')
    scale = resize['scale']
    scale = [scale, scale] if isinstance(scale, int) else list(scale)
    mode = 'keep_ratio' if resize.get('keep_ratio', False) else 'stretch'
    if size is None:
        if mode == 'stretch':
            size = (scale[1], scale[0])
        else:
            short, long = min(scale), max(scale)
            size = (math.ceil(short / divisor) * divisor,
                    math.ceil(long / divisor) * divisor)
    return ResizeRule(mode, list(size), scale,
                      resize.get('interpolation', 'bilinear'),
                      resize.get('backend', 'cv2'),
                      [float(v) for v in pad_value])
