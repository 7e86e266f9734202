"""INT8 post-training quantization of exported detectors and backbones.

* :mod:`.quantizer`: :func:`quantize_detector`, :func:`quantize_classifier`
  and :func:`quantize_onnx` (onnxruntime static QDQ after
  ``quant_pre_process``), :class:`QuantizeOptions`;
* :mod:`.graph`: the network region that is quantized (decoding, NMS,
  RoIAlign and mask pasting stay float);
* :mod:`.calibration`: calibration inputs prepared as the file expects;
* :mod:`.layers`: per-tensor SQNR / cosine against FP32;
* :mod:`.accuracy`: COCO mAP of a deployed file alone (FP32 vs INT8).

Example:
    >>> from rexnet_det.deploy.quantize import quantize_detector
    >>> result = quantize_detector('configs/demo/ssdlite_rexnet-1.0x_'
    ...                            'shapes.py', 'ssdlite.onnx',
    ...                            'ssdlite.int8.onnx')
    >>> result.nodes > 0
    True
"""
from .calibration import CalibrationError
from .quantizer import (META_KEY, METHODS, NETWORK_OPS, AlreadyQuantizedError,
                        NotAnExportError, QuantizeOptions, QuantizeResult,
                        quantize_classifier, quantize_detector,
                        quantize_file, quantize_onnx)

__all__ = [
    'AlreadyQuantizedError', 'CalibrationError', 'META_KEY', 'METHODS',
    'NETWORK_OPS', 'NotAnExportError', 'QuantizeOptions', 'QuantizeResult',
    'quantize_classifier', 'quantize_detector', 'quantize_file',
    'quantize_onnx'
]
