"""Floor 5: whole workflows built from the floors below (the demo)."""
from .demo import DemoOptions, run_demo

__all__ = ['DemoOptions', 'run_demo']
