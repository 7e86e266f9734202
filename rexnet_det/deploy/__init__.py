"""Floor 4: inference forms and their export (ONNX, fused checkpoints)."""
from ..checkpoint import fused_checkpoint, load_fused, load_model
from ..models.utils import fuse_model, is_fused
from .compare import max_relative_error
from .onnx import OrtRunner, export_onnx, output_names

__all__ = [
    'OrtRunner', 'export_onnx', 'fuse_model', 'fused_checkpoint', 'is_fused',
    'load_fused', 'load_model', 'max_relative_error', 'output_names'
]
