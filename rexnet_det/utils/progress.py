"""A compact training progress line for demos (one line, updated in place)."""
import sys
import time
from typing import Optional, TextIO

from mmengine.hooks import Hook


class ProgressHook(Hook):
    """Print ``[####....] iter 120/400  epoch 3/8  loss 1.234  eta 2:10``.

    On a terminal the line is redrawn in place; otherwise one line is
    printed every ``every`` iterations. Register it with
    ``runner.register_hook(ProgressHook(), 'VERY_LOW')``.

    Args:
        width (int): Width of the bar in characters. Default: 30.
        every (int): Print interval when the stream is not a terminal.
            Default: 25.
        stream (TextIO, optional): Where to write. Default: sys.stdout.
    """

    priority = 'VERY_LOW'

    def __init__(self, width: int = 30, every: int = 25,
                 stream: Optional[TextIO] = None) -> None:
        self.width = width
        self.every = every
        self.stream = stream if stream is not None else sys.stdout
        self._start = None
        self._start_iter = 0

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self._start_iter = runner.iter

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        done = runner.iter + 1
        total = runner.max_iters
        elapsed = time.perf_counter() - self._start
        rate = elapsed / max(done - self._start_iter, 1)
        eta = int(rate * (total - done))
        filled = int(self.width * done / total)
        loss = float(outputs['loss']) if outputs and 'loss' in outputs \
            else float('nan')
        line = (f'[{"#" * filled}{"." * (self.width - filled)}] '
                f'iter {done}/{total}  epoch {runner.epoch + 1}/'
                f'{runner.max_epochs}  loss {loss:.3f}  '
                f'{rate:.2f} s/iter  eta {eta // 60}:{eta % 60:02d}')
        if self.stream.isatty():
            self.stream.write('\r' + line)
            if done == total:
                self.stream.write('\n')
        elif done % self.every == 0 or done == total:
            self.stream.write(line + '\n')
        self.stream.flush()
