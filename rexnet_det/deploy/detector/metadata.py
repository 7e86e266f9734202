"""What a client needs to use an exported detector, stored in the ONNX file.

Every entry is one ``metadata_props`` key of the ONNX model whose value is
JSON, so any ONNX client can read it (onnxruntime:
``session.get_modelmeta().custom_metadata_map``). :class:`DeployMeta`
writes and reads them.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .resize import ResizeRule

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
    """An ONNX file without rexnet_det detector metadata."""


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
                metadata (the message names `source`).
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
        names = cls.__dataclass_fields__
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs['resize'] = ResizeRule(**kwargs['resize'])
        return cls(**kwargs)
