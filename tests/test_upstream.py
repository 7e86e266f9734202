"""Upstream behaviour rexnet_det works around, checked on whatever versions
setup.py admits (mmdet 3.3.x, mmengine 0.10.x, torch >= 2.6): each test
asserts the behaviour itself, not a version number. When an admitted
release changes it, the test fails naming the behaviour, and the
workaround can be re-checked (it was written against mmdet 3.3.0 and
mmengine 0.10.7).
"""
import http.server
import inspect
import os.path as osp
import pickle
import threading

import mmdet
import mmengine
import pytest
import torch
from mmengine.runner import checkpoint as mm_ckpt

from rexnet_det.checkpoint import CheckpointMismatchError
from tests.fixtures.toy_runner import ToyModel, make_runner


class Exec:

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").write("pwned")', )


def test_mmdet_ssd_head_cannot_predict():
    """mmdet 3.3: SSDHead.predict reads self.loss_cls, which SSDHead
    never sets (hence rexnet_det's SSDLiteHead)."""
    from mmdet.models.dense_heads import SSDHead
    head = SSDHead(num_classes=4, in_channels=(16, 16, 16, 16, 16, 16),
                   anchor_generator=dict(
                       type='SSDAnchorGenerator', scale_major=False,
                       input_size=300, basesize_ratio_range=(0.15, 0.9),
                       strides=[8, 16, 32, 64, 100, 300],
                       ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]))
    assert not hasattr(head, 'loss_cls')
    source = inspect.getsource(
        mmdet.models.dense_heads.base_dense_head.BaseDenseHead
        ._predict_by_feat_single)
    assert 'self.loss_cls' in source


def test_mmengine_cannot_resume_its_own_checkpoint(tmp_path):
    """mmengine 0.10 + torch >= 2.6: torch.load's default weights_only
    refuses mmengine's HistoryBuffer, so plain mmengine cannot resume."""
    make_runner(str(tmp_path / 'a'), max_iters=2, interval=2).train()
    path = str(tmp_path / 'a' / 'iter_2.pth')
    with pytest.raises(pickle.UnpicklingError,
                       match='mmengine.logging.history_buffer.HistoryBuffer'):
        mm_ckpt.load_from_local(path, 'cpu')  # mmengine's own loader
    runner = make_runner(str(tmp_path / 'b'), max_iters=2, load_from=path,
                         resume=True)
    runner.train()  # through rexnet_det's loader
    assert runner.iter == 2


def test_mmengine_http_loader_unpickles_freely(tmp_path):
    """mmengine 0.10's http loader calls torch.hub's load_url with
    weights_only=False: a served checkpoint runs its code."""
    marker = str(tmp_path / 'pwned')
    torch.save(dict(state_dict={}, meta=Exec(marker)), tmp_path / 'e.pth')

    class Handler(http.server.SimpleHTTPRequestHandler):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        mm_ckpt.load_from_http(
            f'http://127.0.0.1:{httpd.server_port}/e.pth',
            model_dir=str(tmp_path / 'hub'))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert osp.exists(marker)


def test_mmengine_runner_loads_partially(tmp_path):
    """mmengine 0.10's Runner.load_checkpoint defaults to strict=False:
    without StrictLoadHook a backbone-only file loads silently."""
    assert inspect.signature(mmengine.runner.Runner.load_checkpoint) \
        .parameters['strict'].default is False
    path = str(tmp_path / 'backbone.pth')
    torch.save({k: v for k, v in ToyModel().state_dict().items()
                if k.startswith('backbone.')}, path)
    plain = make_runner(str(tmp_path / 'a'), load_from=path,
                        custom_hooks=())
    plain.load_or_resume()  # no error: the head stays random
    strict = make_runner(str(tmp_path / 'b'), load_from=path)
    with pytest.raises(CheckpointMismatchError, match='head.weight'):
        strict.load_or_resume()


def test_checkpoint_hook_private_method_we_override():
    """AtomicCheckpointHook overrides CheckpointHook._save_checkpoint_with_step
    (mmengine 0.10); its signature and the bookkeeping it repeats must be
    what we read."""
    from mmengine.hooks import CheckpointHook

    from rexnet_det.engine import AtomicCheckpointHook
    ours = inspect.signature(AtomicCheckpointHook._save_checkpoint_with_step)
    theirs = inspect.signature(CheckpointHook._save_checkpoint_with_step)
    assert list(ours.parameters) == list(theirs.parameters)
    source = inspect.getsource(CheckpointHook._save_checkpoint_with_step)
    # mmengine deletes the stale checkpoint before writing the new one
    assert source.index('self.file_backend.remove') < \
        source.index('runner.save_checkpoint')
    assert 'keep_ckpt_ids' in source and 'last_checkpoint' in source


def test_mmengine_turns_checkpoint_text_into_code(tmp_path):
    """mmengine 0.10.7 runs the config text of checkpoints (Runner.resume:
    meta['config']; BaseInferencer, so DetInferencer(model=None): the cfg
    texts), and a registry builds any dotted `type`, so even plain data
    calls os.system. rexnet_det removes those texts when it loads a file
    (rexnet_det/checkpoint/config_text.py)."""
    from mmengine.infer.infer import BaseInferencer
    from mmengine.registry import MODELS

    from rexnet_det import integration
    resume = inspect.getsource(integration._saved['resume'])
    assert "Config.fromstring(\n                checkpoint['meta']['config']" \
        in resume
    # ... and it reads the training state and zips the schedulers blindly
    assert "checkpoint['meta']['epoch']" in resume
    assert 'zip(\n                        self.param_schedulers' in resume
    infer = inspect.getsource(BaseInferencer._init_model)
    assert "checkpoint['message_hub']['runtime_info']['cfg']" in infer
    assert "Config.fromstring(cfg_string, file_format='.py')" in infer
    marker = tmp_path / 'pwned'
    MODELS.build(dict(type='os.system', command=f'touch {marker}'))
    assert marker.exists()

