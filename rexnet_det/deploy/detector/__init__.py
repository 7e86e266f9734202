"""Detectors as one self-contained ONNX file.

* :mod:`.ops`: graph-safe normalisation, candidate selection, box
  decoding, per-class NMS with top-k (shared by both kinds);
* :mod:`.roi_ops`: RoIAlign (ONNX ``RoiAlign``), FPN level mapping and
  mask pasting (separable bilinear ``MatMul``) for two-stage detectors;
* :mod:`.single_stage`: :class:`SingleStageExport` (SSD, SSDLite,
  RetinaNet);
* :mod:`.two_stage`: :class:`TwoStageExport` (Faster / Mask R-CNN);
* :mod:`.resize` / :mod:`.metadata`: the test-time resize rule and what
  the file tells a client;
* :mod:`.export`: :func:`export_detector`;
* :mod:`.runtime`: :class:`DeployedDetector` on onnxruntime / OpenVINO;
* :mod:`.verify`: :func:`verify_detector` against mmdet's inference.
"""
from .export import DEFAULT_OPSET, export_detector
from .metadata import DeployMeta, NotADeployedDetectorError
from .ops import EMPTY_LABEL
from .resize import PreparedImage, ResizeRule
from .runtime import (RUNTIMES, DeployedDetector, Detections,
                      RuntimeNotInstalledError, read_image)
from .single_stage import (OUTPUT_NAMES, SingleStageExport,
                           UnsupportedDetectorError)
from .two_stage import MASK_OUTPUT_NAMES, TwoStageExport
from .verify import VerifyReport, verify_detector

__all__ = [
    'DEFAULT_OPSET', 'EMPTY_LABEL', 'MASK_OUTPUT_NAMES', 'OUTPUT_NAMES',
    'RUNTIMES', 'TwoStageExport',
    'DeployMeta', 'DeployedDetector', 'Detections',
    'NotADeployedDetectorError', 'PreparedImage', 'ResizeRule',
    'RuntimeNotInstalledError', 'SingleStageExport',
    'UnsupportedDetectorError', 'VerifyReport', 'export_detector',
    'read_image', 'verify_detector'
]
