"""The main job of `make demo`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo_backbones import main as demo_backbones  # noqa: E402

if __name__ == '__main__':
    demo_backbones()
