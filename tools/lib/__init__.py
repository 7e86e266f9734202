"""Helper modules of the scripts under ``tools/``: FLOP counting, timing,
random detectors with busy weights, the rank study, load-speed and GPU
measurements, the EfficientNet peer's graph fix-up and the demo workflow.
Importing this package imports nothing else (the GPU tool relies on it)."""
