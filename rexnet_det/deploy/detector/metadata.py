"""What a client needs to use an exported detector, stored in the ONNX file.

Every entry is one ``metadata_props`` key of the ONNX model whose value is
JSON, so any ONNX client can read it (onnxruntime:
``session.get_modelmeta().custom_metadata_map``). :class:`DeployMeta`
writes and reads them.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .resize import DYNAMIC_MODE, ResizeRule

#: Format tag; a reader refuses files without it.
FORMAT = 'rexnet_det.detector/1'
INPUT_LAYOUT = ('input: float32 [N, 3, H, W], RGB, 0-255, already resized '
                'and padded by `resize` (mode keep_ratio_pad_divisor: '
                'rescale keeping the ratio, pad bottom/right with '
                'pad_value up to multiples of divisor; any such H, W); '
                'mean/std normalisation is inside the graph')
IMG_SHAPE_LAYOUT = ('img_shape: float32 [N, 2], (h, w) of each resized image '
                    'before padding; boxes are clamped to it, as mmdet '
                    'clamps them')
OUTPUT_LAYOUT = ('dets: float32 [N, K, 5] (x1, y1, x2, y2, score) in input '
                 'pixels, descending score; labels: int64 [N, K] indices '
                 'into `classes`; K = max_per_img')
MASK_LAYOUT = ('masks: float32 [N, K, H, W] probabilities of each '
               'detection\'s mask pasted into the input pixels (crop to the '
               'resized image, resize to the original, keep >= mask_thr)')
EMPTY_SLOT = ('label -1 with box and score 0 (real detections score > '
              'score_thr >= 0)')


class NotADeployedDetectorError(ValueError):
    """A file that is not a usable rexnet_det detector: the runtime cannot
    read it, or its metadata is missing, broken or does not fit the graph.
    The message names the file."""


#: Field -> (JSON types, a check on the value, what it must be).
_FIELDS = {
    'classes': (list, lambda v: v and all(isinstance(c, str) for c in v),
                'a non-empty list of strings'),
    'score_thr': ((int, float), lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    'iou_threshold': ((int, float), lambda v: 0 <= v <= 1,
                      'a number in [0, 1]'),
    'nms_pre': (int, lambda v: v >= 1, 'an int >= 1'),
    'max_per_img': (int, lambda v: v >= 1, 'an int >= 1'),
    'dynamic_batch': (bool, None, 'true or false'),
    'detector': (str, None, 'a string'),
    'mean': (list, lambda v: len(v) == 3 and all(
        isinstance(x, (int, float)) for x in v), '3 numbers'),
    'std': (list, lambda v: len(v) == 3 and all(
        isinstance(x, (int, float)) and x > 0 for x in v),
        '3 numbers > 0'),
    'palette': ((list, type(None)), None, 'a list or null'),
    'source': (dict, None, 'an object'),
    'masks': (bool, None, 'true or false'),
    'mask_thr': ((int, float), lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
}
_RESIZE_KEYS = ('mode', 'size', 'scale', 'interpolation', 'backend',
                'pad_value', 'divisor')
#: Largest input side a file may declare (the runtime allocates a
#: ``[3, H, W]`` float32 canvas per image).
MAX_INPUT_SIDE = 8192


def _check_values(values: Dict[str, Any], source: str) -> None:
    """Refuse missing or ill-typed fields, naming `source` and the field."""
    def bad(key: str, need: str) -> NotADeployedDetectorError:
        return NotADeployedDetectorError(
            f'{source}: metadata {key!r} must be {need}, got '
            f'{values.get(key, "(missing)")!r}')

    for key, (types, check, need) in _FIELDS.items():
        value = values.get(key)
        optional = key in ('palette', 'source', 'masks', 'mask_thr')
        if key not in values and optional:
            continue
        # bool is an int in Python, but not a number here
        if not isinstance(value, types) or (
                isinstance(value, bool) and bool not in (
                    types if isinstance(types, tuple) else (types, ))) or (
                check is not None and not check(value)):
            raise bad(key, need)
    resize = values.get('resize')
    if not isinstance(resize, dict) or set(resize) - set(_RESIZE_KEYS) or \
            not {'mode', 'size', 'scale'} <= set(resize):
        raise bad('resize', f'an object with mode, size, scale (and '
                  f'optionally {", ".join(_RESIZE_KEYS[3:])})')
    divisor = resize.get('divisor', 1)
    if not isinstance(divisor, int) or isinstance(divisor, bool) or \
            not 1 <= divisor <= MAX_INPUT_SIDE:
        raise bad('resize', f'divisor an int in [1, {MAX_INPUT_SIDE}] '
                  f'(resize.divisor is {divisor!r})')
    for key in ('size', 'scale'):
        side = resize[key]
        if key == 'size' and side is None and \
                resize['mode'] == DYNAMIC_MODE:
            continue  # any padded size: checked per batch by the runtime
        if not isinstance(side, list) or len(side) != 2 or not all(
                isinstance(x, int) and not isinstance(x, bool) and
                1 <= x <= MAX_INPUT_SIDE for x in side):
            raise bad('resize', f'{key} of two ints in [1, {MAX_INPUT_SIDE}]'
                      f' (resize.{key} is {side!r})')
    pad = resize.get('pad_value')
    if pad is not None and not (isinstance(pad, list) and len(pad) == 3 and
                                all(isinstance(x, (int, float))
                                    for x in pad)):
        raise bad('resize', f'pad_value of 3 numbers (is {pad!r})')
    import mmcv.image.geometric as geometric
    codes = {'cv2': geometric.cv2_interp_codes,
             'pillow': getattr(geometric, 'pillow_interp_codes', {})}
    backend = resize.get('backend', 'cv2')
    if backend not in codes or resize.get(
            'interpolation', 'bilinear') not in codes[backend]:
        raise bad('resize', f'backend in {sorted(codes)} and one of its '
                  f'interpolations (backend {backend!r}, interpolation '
                  f'{resize.get("interpolation")!r})')


@dataclass
class DeployMeta:
    """The metadata of an exported detector.

    Attributes:
        resize (ResizeRule): How images become the input.
        classes (list[str]): Class names, indexed by ``labels``.
        score_thr, iou_threshold, nms_pre, max_per_img: The ``test_cfg``
            the graph applies.
        dynamic_batch (bool): Whether N may differ from 1.
        detector (str): Detector and head types.
        mean, std (list[float]): The in-graph normalisation (RGB order).
        palette (list, optional): Class colours for drawing.
        source (dict): Config and checkpoint it was exported from.
        masks (bool): The graph also outputs ``masks`` (Mask R-CNN).
            Default: False (files written before masks existed).
        mask_thr (float): Probability a mask pixel needs (mmdet's
            ``mask_thr_binary``, compared with ``>=``). Default: 0.5.
        img_shape_input (bool): The graph has a second input,
            ``img_shape`` (keep-ratio rules). Default: False (files written
            before it existed, and stretching rules).
    """
    resize: ResizeRule
    classes: List[str]
    score_thr: float
    iou_threshold: float
    nms_pre: int
    max_per_img: int
    dynamic_batch: bool
    detector: str
    mean: List[float]
    std: List[float]
    palette: Optional[List[Any]] = None
    source: Dict[str, str] = field(default_factory=dict)
    masks: bool = False
    mask_thr: float = 0.5
    img_shape_input: bool = False

    def to_props(self) -> Dict[str, str]:
        """ONNX ``metadata_props`` entries (key -> JSON text)."""
        values = dict(
            format=FORMAT,
            input_layout=INPUT_LAYOUT + (f'; {IMG_SHAPE_LAYOUT}' if
                                         self.img_shape_input else ''),
            output_layout=OUTPUT_LAYOUT + (f'; {MASK_LAYOUT}' if self.masks
                                           else ''),
            empty_slot=EMPTY_SLOT + ('; mask 0' if self.masks else ''),
            resize=self.resize.to_dict(), classes=self.classes,
            score_thr=self.score_thr, iou_threshold=self.iou_threshold,
            nms_pre=self.nms_pre, max_per_img=self.max_per_img,
            dynamic_batch=self.dynamic_batch, detector=self.detector,
            mean=self.mean, std=self.std, palette=self.palette,
            source=self.source, masks=self.masks, mask_thr=self.mask_thr,
            img_shape_input=self.img_shape_input)
        return {k: json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Dict[str, str], source: str = 'the model'
                   ) -> 'DeployMeta':
        """Read what :meth:`to_props` wrote.

        Raises:
            NotADeployedDetectorError: `props` has no rexnet_det detector
                metadata, or a field is missing or of the wrong type or
                range (the message names `source` and the field).
        """
        try:
            values = {k: json.loads(v) for k, v in props.items()}
        except json.JSONDecodeError as exc:
            raise NotADeployedDetectorError(
                f'{source}: metadata is not JSON ({exc})') from None
        if values.get('format') != FORMAT:
            raise NotADeployedDetectorError(
                f'{source} is not a detector exported by rexnet_det '
                f'(metadata format {values.get("format")!r}, expected '
                f'{FORMAT!r}); export it with tools/deploy/export.py')
        _check_values(values, source)
        names = cls.__dataclass_fields__
        kwargs = {k: v for k, v in values.items() if k in names}
        try:
            kwargs['resize'] = ResizeRule(**kwargs['resize'])
        except (TypeError, ValueError) as exc:
            raise NotADeployedDetectorError(
                f'{source}: metadata \'resize\' is invalid: {exc}') from None
        return cls(**kwargs)
