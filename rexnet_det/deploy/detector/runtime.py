"""Run an exported detector with onnxruntime or OpenVINO.

:class:`DeployedDetector` reads the file's :class:`DeployMeta`, prepares
images exactly as the config's test pipeline does (mmcv resize, BGR -> RGB),
runs the graph and maps the boxes (and Mask R-CNN's masks) back to the
original image. No config, checkpoint or PyTorch model is involved.

Masks come out of the graph as probabilities pasted into the input pixels;
:meth:`DeployedDetector.postprocess` crops them to the resized image (the
padding goes), resizes them bilinearly to the original size and keeps
pixels with probability ``>= mask_thr`` (0.5, mmdet's ``mask_thr_binary``):
``Detections.masks`` are boolean ``[n, h, w]`` in original pixels. mmdet
itself pastes each mask straight into the original image; where the
resize is not the identity the two differ by interpolation at the mask
border (``tools/deploy/verify.py`` reports the worst mask IoU).
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..onnx import openvino_cpu_config, ort_session
from .metadata import DeployMeta
from .resize import PreparedImage

RUNTIMES = ('ort', 'openvino')
Image = Union[str, os.PathLike, np.ndarray]


class RuntimeNotInstalledError(ImportError):
    """The requested inference runtime is not installed."""


@dataclass
class Detections:
    """Detections of one image, in original-image pixels.

    Attributes:
        bboxes (np.ndarray): ``[n, 4]`` float32 (x1, y1, x2, y2).
        scores (np.ndarray): ``[n]`` float32, descending.
        labels (np.ndarray): ``[n]`` int64 indices into the class names.
        masks (np.ndarray, optional): ``[n, h, w]`` bool instance masks in
            the original image (models exported with masks only).
    """
    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)


def read_image(image: Image) -> np.ndarray:
    """A BGR uint8 ``[h, w, 3]`` image from a path or an array.

    Files are decoded as the test pipeline's ``LoadImageFromFile`` does
    (grayscale and RGBA become 3-channel BGR).

    Raises:
        ImageLoadError: A file that is missing or cannot be decoded (named).
        ValueError: An array that is not ``[h, w, 3]`` uint8.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'image array must be BGR uint8 [h, w, 3], got '
                             f'{image.dtype} {list(image.shape)}')
        return image
    from ...datasets import CheckedLoadImageFromFile
    return CheckedLoadImageFromFile()(dict(img_path=os.fspath(image)))['img']


class _OrtSession:
    def __init__(self, path: str, threads: int) -> None:
        self.session = ort_session(path, threads)

    def metadata(self) -> Dict[str, str]:
        """The file's ``metadata_props``."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self.session.run(None, inputs)


class _OpenVinoSession:
    def __init__(self, path: str, threads: int) -> None:
        import openvino as ov
        core = ov.Core()
        self.model = core.read_model(path)
        self.compiled = core.compile_model(self.model, 'CPU',
                                           openvino_cpu_config(threads))
        self.request = self.compiled.create_infer_request()
        names = {n for o in self.compiled.outputs for n in o.get_names()}
        self.outputs = [self.compiled.output(n) for n in
                        ('dets', 'labels', 'masks') if n in names]

    def metadata(self) -> Dict[str, str]:
        """The file's ``metadata_props`` (OpenVINO keeps them as the
        model's ``framework`` runtime info)."""
        info = self.model.get_rt_info()
        if 'framework' not in info:
            return {}
        return {k: v.astype(str) for k, v in info['framework'].items()}

    def __call__(self, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
        result = self.request.infer(inputs)
        return [np.asarray(result[o]) for o in self.outputs]


def open_session(path: str, runtime: str = 'ort', threads: int = 0):
    """A callable ``{input name: array} -> [dets, labels(, masks)]`` for
    `path` on `runtime`.

    Raises:
        ValueError: Unknown `runtime`.
        RuntimeNotInstalledError: Its package is missing.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, got '
                         f'{runtime!r}')
    package = 'onnxruntime' if runtime == 'ort' else 'openvino'
    try:
        __import__(package)
    except ImportError:
        raise RuntimeNotInstalledError(
            f'runtime {runtime!r} needs the {package} package, which is not '
            f'installed; install it with pip install "rexnet_det[deploy]" '
            f'(or pip install {package}), or pick another --runtime') \
            from None
    return (_OrtSession if runtime == 'ort' else _OpenVinoSession)(
        path, threads)


class DeployedDetector:
    """An exported detector, ready to predict on images.

    Args:
        path (str | PathLike): ``.onnx`` file from :func:`export_detector`.
        runtime (str): ``'ort'`` (onnxruntime) or ``'openvino'``.
            Default: ``'ort'``.
        threads (int): Intra-op threads (0: the runtime's default).

    Raises:
        FileNotFoundError: `path` does not exist.
        NotADeployedDetectorError: The file lacks our metadata.
        RuntimeNotInstalledError: The runtime is not installed.

    Example:
        >>> detector = DeployedDetector('ssdlite.onnx', runtime='openvino')
        >>> result = detector.predict('demo.jpg')
        >>> result.bboxes.shape, detector.classes[result.labels[0]]
        ((12, 4), 'person')
    """

    def __init__(self, path: Union[str, os.PathLike], runtime: str = 'ort',
                 threads: int = 0) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'model file not found: {path}')
        self.path, self.runtime = path, runtime
        self.session = open_session(path, runtime, threads)
        self.meta = DeployMeta.from_props(self.session.metadata(), path)

    @property
    def classes(self) -> List[str]:
        return self.meta.classes

    def prepare(self, image: Image) -> PreparedImage:
        """Read and resize one image into the graph's input."""
        return self.meta.resize.apply(read_image(image))

    def infer(self, batch: np.ndarray,
              img_shapes: Optional[Sequence[Tuple[int, int]]] = None
              ) -> Tuple[np.ndarray, ...]:
        """Run the graph on a prepared ``[N, 3, H, W]`` batch.

        `img_shapes`: ``(h, w)`` of each resized image before padding
        (:attr:`PreparedImage.img_shape`), where files with an
        ``img_shape`` input clamp boxes, as mmdet does. Default: the
        whole input (no padding).

        Raises:
            ValueError: The shape does not fit the file (a fixed size
                other than its own, H or W not a multiple of the resize
                rule's divisor, N > 1 without a dynamic batch); the
                message names the shape.

        Returns:
            tuple: Raw ``dets [N, K, 5]`` and ``labels [N, K]`` (input
            pixels, empty slots included), and for models with masks
            ``masks [N, K, H, W]`` (probabilities in input pixels).
        """
        self.meta.resize.check_input_shape(batch.shape, self.path)
        if batch.shape[0] != 1 and not self.meta.dynamic_batch:
            raise ValueError(f'{self.path} was exported for batch 1, got '
                             f'{batch.shape[0]}; export with '
                             '--dynamic-batch')
        inputs = {'input': np.ascontiguousarray(batch, np.float32)}
        if self.meta.img_shape_input:
            if img_shapes is None:
                img_shapes = [batch.shape[2:]] * batch.shape[0]
            inputs['img_shape'] = np.asarray(img_shapes, np.float32).reshape(
                batch.shape[0], 2)
        return tuple(self.session(inputs))

    def postprocess(self, dets: np.ndarray, labels: np.ndarray,
                    prepared: PreparedImage,
                    masks: Optional[np.ndarray] = None) -> Detections:
        """One image's filled slots, mapped back to the original image
        (`masks`: its ``[K, H, W]`` probabilities, see the module doc)."""
        filled = labels >= 0
        boxes = dets[filled, :4]
        if self.meta.resize.mode != 'stretch':
            # mmdet clamps to the resized image, not to the padded canvas;
            # boxes that lay entirely in the padding vanish.
            h, w = prepared.img_shape
            boxes = np.minimum(boxes, np.array([w, h, w, h], np.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        sx, sy = prepared.scale_factor
        # As mmdet's scale_boxes: multiply by the float32 reciprocal.
        boxes = boxes[keep] * np.array([1 / sx, 1 / sy, 1 / sx, 1 / sy],
                                       np.float32)
        kept_masks = None
        if masks is not None:
            kept_masks = self.original_masks(
                masks, np.flatnonzero(filled)[keep], prepared)
        return Detections(boxes.astype(np.float32),
                          dets[filled, 4][keep].astype(np.float32),
                          labels[filled][keep].astype(np.int64), kept_masks)

    def original_masks(self, masks: np.ndarray, index: np.ndarray,
                       prepared: PreparedImage) -> np.ndarray:
        """Slots `index` of ``[K, H, W]`` probabilities in input pixels ->
        ``[n, h, w]`` bool masks of the original image: crop the padding,
        resize bilinearly, keep ``>= mask_thr``."""
        import cv2
        new_h, new_w = prepared.img_shape
        h, w = prepared.ori_shape
        if (new_h, new_w) == (h, w):  # not resized: crop and threshold
            return np.stack([masks[i, :h, :w] >= self.meta.mask_thr
                             for i in index]) if len(index) else \
                np.zeros((0, h, w), bool)
        out = np.zeros((len(index), h, w), bool)
        for i, mask in enumerate(masks[j] for j in index):
            mask = mask[:new_h, :new_w]
            if (new_h, new_w) != (h, w):
                mask = cv2.resize(mask, (w, h),
                                  interpolation=cv2.INTER_LINEAR)
            out[i] = mask >= self.meta.mask_thr
        return out

    def predict(self, image: Image) -> Detections:
        """Detections on one image (BGR array or path), in its pixels."""
        prepared = self.prepare(image)
        outputs = self.infer(prepared.input[None], [prepared.img_shape])
        return self.postprocess(*(o[0] for o in outputs[:2]), prepared,
                                outputs[2][0] if len(outputs) > 2 else None)

    def predict_batch(self, images: Sequence[Image]) -> List[Detections]:
        """:meth:`predict` on several images in one run (needs a
        ``--dynamic-batch`` export for more than one).

        Raises:
            ValueError: The images' padded inputs differ in size (a
                ``keep_ratio_pad_divisor`` file takes one size per run, as
                each image must see mmdet's own padding); the message
                lists the shapes.
        """
        prepared = [self.prepare(image) for image in images]
        if not prepared:
            return []
        shapes = sorted({p.input.shape[1:] for p in prepared})
        if len(shapes) > 1:
            raise ValueError(
                f'{self.path}: one batch takes images of one padded size, '
                f'got {len(shapes)} sizes (H, W) {shapes}; group the images '
                'by padded size or call predict() on each')
        outputs = self.infer(np.stack([p.input for p in prepared]),
                             [p.img_shape for p in prepared])
        masks = outputs[2] if len(outputs) > 2 else [None] * len(prepared)
        return [self.postprocess(d, lab, p, m) for d, lab, p, m in
                zip(outputs[0], outputs[1], prepared, masks)]
