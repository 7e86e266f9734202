"""Floor 4: inference forms and their export (ONNX, fused checkpoints).

Backbones and classifiers export with :func:`export_onnx`; detectors -
single-stage (SSD, SSDLite, RetinaNet) and two-stage (Faster / Mask R-CNN
with masks pasted in the graph) - become one self-contained ONNX file with
:func:`export_detector`, run with :class:`DeployedDetector` and are checked
with :func:`verify_detector` (see :mod:`.detector`).
"""
from ..checkpoint import fused_checkpoint, load_fused, load_model
from ..models.utils import fuse_model, is_fused
from .compare import DetectionMatch, match_detections, max_relative_error
from .detector import (DeployedDetector, Detections,
                       UnsupportedDetectorError, export_detector,
                       verify_detector)
from .onnx import OrtRunner, export_onnx, output_names

__all__ = [
    'DeployedDetector', 'DetectionMatch', 'Detections', 'OrtRunner',
    'UnsupportedDetectorError', 'export_detector', 'export_onnx',
    'fuse_model', 'fused_checkpoint', 'is_fused', 'load_fused', 'load_model',
    'match_detections', 'max_relative_error', 'output_names',
    'verify_detector'
]
