"""The test-time resize rule of a config, and applying it to an image.

The exported graph takes an image already resized (and padded). Three
rules cover mmdet's configs:

* ``stretch`` (``Resize(scale=(w, h), keep_ratio=False)``, e.g. SSDLite at
  320x320): resize to exactly ``W x H`` (the graph's fixed input size).
  Identical to mmdet's pipeline.
* ``keep_ratio_pad_divisor`` (``Resize(scale=(1333, 800),
  keep_ratio=True)``, e.g. RetinaNet, Faster / Mask R-CNN; the default
  export): rescale as mmdet does (long side <= max(scale), short side <=
  min(scale)), then pad bottom/right to the next multiple of ``divisor``
  (the data preprocessor's ``pad_size_divisor``) with the value that
  normalises to its ``pad_value`` (mmdet pads after normalising). This is
  exactly the input mmdet's ``inference_detector`` gives the network; the
  graph takes any such ``H x W``.
* ``keep_ratio`` (the same configs exported with a fixed input size,
  ``--static-shape``): rescale as mmdet does; if that does not fit the
  ``H x W`` canvas (a portrait image in a landscape canvas), rescale to fit
  it instead; then pad to the whole canvas. The network sees more padding
  than mmdet's, so detections differ from mmdet's (docs/deployment.md
  gives the measured gap).

Resizing uses mmcv (``imresize`` / ``imrescale`` with the config's
interpolation and backend), as mmdet's ``Resize`` does.
"""
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

MODES = ('stretch', 'keep_ratio', 'keep_ratio_pad_divisor')
#: The mode whose graph input size varies with the image.
DYNAMIC_MODE = 'keep_ratio_pad_divisor'
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
        mode (str): One of :data:`MODES` (see the module doc).
        size (list[int], optional): ``[H, W]`` of the graph input; None
            for ``keep_ratio_pad_divisor`` (it varies with the image).
        scale (list[int]): The config's ``Resize.scale`` ``[w, h]``
            (for ``keep_ratio``: the long/short side limits).
        interpolation (str): mmcv interpolation. Default: ``'bilinear'``.
        backend (str): mmcv resize backend. Default: ``'cv2'``.
        pad_value (list[float]): RGB value of padded pixels (0-255 scale).
        divisor (int): ``keep_ratio_pad_divisor`` pads H and W up to a
            multiple of this; the graph takes any such size. Default: 1.
    """
    mode: str
    size: Optional[List[int]]
    scale: List[int]
    interpolation: str = 'bilinear'
    backend: str = 'cv2'
    pad_value: Optional[List[float]] = None
    divisor: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'resize mode must be one of {MODES}, got '
                             f'{self.mode!r}')
        if (self.size is None) != (self.mode == DYNAMIC_MODE):
            raise ValueError(f'resize mode {self.mode!r} needs '
                             f'{"no" if self.mode == DYNAMIC_MODE else "a"} '
                             f'fixed size, got {self.size!r}')
        if self.size is not None:
            self.size = [int(s) for s in self.size]
        self.divisor = int(self.divisor)
        if self.divisor < 1:
            raise ValueError(f'divisor must be >= 1, got {self.divisor}')
        self.scale = [int(s) for s in self.scale]
        if self.pad_value is None:
            self.pad_value = [0.0, 0.0, 0.0]

    @property
    def dynamic(self) -> bool:
        """The graph input size follows the image (see :data:`MODES`)."""
        return self.mode == DYNAMIC_MODE

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def check_input_shape(self, shape: Sequence[int], where: str) -> None:
        """Raise ValueError naming `where` and `shape` unless a
        ``[N, 3, H, W]`` batch of that shape fits the graph.

        Args:
            shape (Sequence[int]): The batch's shape.
            where (str): What takes it (the model file), for the message.
        """
        shape = list(shape)
        if self.size is not None:
            if len(shape) != 4 or shape[1:] != [3] + self.size:
                raise ValueError(f'{where} takes [N, 3, {self.size[0]}, '
                                 f'{self.size[1]}] input, got {shape}')
            return
        d = self.divisor
        if len(shape) != 4 or shape[1] != 3 or shape[2] % d or shape[3] % d \
                or min(shape[2:]) < 1:
            fit = [max(d, -(-s // d) * d) for s in shape[2:4]] \
                if len(shape) == 4 else None
            raise ValueError(
                f'{where} takes [N, 3, H, W] input with H and W multiples of '
                f'{d} (pad bottom/right as resize.mode {self.mode!r} says'
                f'{f", e.g. to {fit}" if fit else ""}), got {shape}')

    def _rescaled_size(self, h: int, w: int) -> Tuple[int, int, float]:
        """mmcv's ``rescale_size`` rule, or the canvas-fitting factor."""
        import mmcv
        new_w, new_h = mmcv.rescale_size((w, h), tuple(self.scale))
        if self.size is None:
            return new_h, new_w, 0.0
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
        if self.mode == 'stretch':
            height, width = self.size
            resized = mmcv.imresize(image, (width, height),
                                    interpolation=self.interpolation,
                                    backend=self.backend)
        else:
            new_h, new_w, factor = self._rescaled_size(h, w)
            resized = mmcv.imrescale(image, factor or tuple(self.scale),
                                     interpolation=self.interpolation,
                                     backend=self.backend)
        new_h, new_w = resized.shape[:2]
        if self.dynamic:  # mmdet's stack_batch: up to the divisor only
            d = self.divisor
            height, width = -(-new_h // d) * d, -(-new_w // d) * d
        elif self.mode == 'keep_ratio':
            height, width = self.size
        canvas = np.empty((3, height, width), np.float32)
        canvas[...] = np.asarray(self.pad_value, np.float32)[:, None, None]
        # BGR -> RGB, HWC -> CHW; mmdet converts the uint8 image the same way
        canvas[:, :new_h, :new_w] = resized[..., ::-1].transpose(2, 0, 1)
        return PreparedImage(canvas, (new_w / w, new_h / h), (new_h, new_w),
                             (h, w))


def _steps(pipeline: Sequence[dict]) -> List[dict]:
    return [dict(step) for step in pipeline]


def rule_from_pipeline(pipeline: Sequence[dict], size: Optional[
        Sequence[int]], divisor: int, pad_value: Sequence[float],
        static_shape: bool = True, pad_divisor: int = 1) -> ResizeRule:
    """Read the resize rule from a config's test pipeline.

    Args:
        pipeline (list[dict]): The test pipeline (``Resize`` must be in it).
        size (Sequence[int], optional): ``(H, W)`` of the graph input (a
            keep-ratio resize then pads to this fixed canvas). Default: the
            pipeline's size for ``stretch``; for a keep-ratio resize the
            landscape canvas ``(short, long)`` rounded up to `divisor` if
            `static_shape`, else no fixed size
            (``keep_ratio_pad_divisor``).
        divisor (int): Size multiple of the default fixed canvas.
        pad_value (Sequence[float]): RGB 0-255 value of padded pixels.
        static_shape (bool): See `size`. Default: True.
        pad_divisor (int): The preprocessor's ``pad_size_divisor``, which
            ``keep_ratio_pad_divisor`` pads to. Default: 1.

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
        elif static_shape:
            short, long = min(scale), max(scale)
            size = (math.ceil(short / divisor) * divisor,
                    math.ceil(long / divisor) * divisor)
        else:
            mode = DYNAMIC_MODE
    return ResizeRule(mode, None if size is None else list(size), scale,
                      resize.get('interpolation', 'bilinear'),
                      resize.get('backend', 'cv2'),
                      [float(v) for v in pad_value],
                      pad_divisor if mode == DYNAMIC_MODE else 1)
