"""Strict means every entry, checked (issue 19, findings 3, 4, 5, 9, 16).

Real files only: ``torch.save`` of state dicts with one entry that is not a
dense finite tensor of the model's dtype class, byte surgery that breaks a
record's CRC-32, a hand-built zip whose deflated record inflates 1000:1,
directories, FIFOs, safetensors files, broken and deeply nested pickles.
Each goes through the real routes (``load_pretrained``, ``init_cfg``
Pretrained, a Runner's ``load_from`` and ``resume``, ``tools/test.py``),
and each refusal must name the file and the entry and leave every model
tensor as it was.
"""
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from mmengine.config import Config

from rexnet_det import ReXNet, load_pretrained
from rexnet_det.checkpoint import (CheckpointError, CheckpointMismatchError,
                                   safe_torch_load)
from tests.conftest import load_tool
from tests.fixtures.tiny_configs import write_tiny_config
from tests.fixtures.toy_runner import make_runner

KEY = 'backbone.blocks.0.conv_dw.conv.weight'  # in the toy and the detector


def _with_nan(t):
    t = t.clone()
    t.view(-1)[1] = float('nan')
    return t


def _with_inf(t):
    t = t.clone()
    t.view(-1)[0] = float('-inf')
    return t


# entry -> (what replaces a float weight of the right shape, the message)
BAD = {
    'meta': (lambda t: torch.empty_like(t, device='meta'),
             'a meta tensor (no data)'),
    'sparse': (lambda t: t.to_sparse(), 'a sparse_coo tensor, not dense'),
    'ndarray': (lambda t: t.numpy(), 'of type numpy.ndarray, not a tensor'),
    'int': (lambda t: 3, 'of type int, not a tensor'),
    'str': (lambda t: 'w', 'of type str, not a tensor'),
    'None': (lambda t: None, 'of type NoneType, not a tensor'),
    'nan': (_with_nan, '1 of '),
    'inf': (_with_inf, '1 of '),
    'int64': (lambda t: t.long(), 'checkpoint torch.int64 vs model '
              'torch.float32'),
    'complex': (lambda t: t.to(torch.complex64),
                'checkpoint torch.complex64 vs model torch.float32'),
}
KIND = {'meta': 'not dense tensors', 'sparse': 'not dense tensors',
        'ndarray': 'not dense tensors', 'int': 'not dense tensors',
        'str': 'not dense tensors', 'None': 'not dense tensors',
        'nan': 'non-finite values', 'inf': 'non-finite values',
        'int64': 'dtype mismatch', 'complex': 'dtype mismatch'}


def shifted(state):
    """Values no fresh model holds (BatchNorm's ones and zeros included),
    so that any tensor copied from the file is recognisable."""
    return {k: v + 0.5 if v.is_floating_point() else v
            for k, v in state.items()}


def bad_file(path, state, kind, key=KEY, wrap=True):
    state = dict(state)
    state[key] = BAD[kind][0](state[key])
    torch.save(dict(state_dict=state, meta=dict()) if wrap else state, path)
    return str(path)


def assert_named(message, path, kind, key=KEY):
    assert str(path) in message, message
    assert f'{KIND[kind]} (1)' in message, message
    assert f'{key}: {BAD[kind][1]}' in message, message
    assert 'Nothing was loaded' in message


def assert_nothing_copied(model, state):
    """No tensor of `model` holds the file's (shifted) values."""
    got = model.state_dict()
    floats = [k for k, v in state.items()
              if k in got and isinstance(v, torch.Tensor) and
              v.is_floating_point() and v.layout == torch.strided and
              not v.is_meta and v.shape == got[k].shape]
    assert len(floats) > 10
    copied = [k for k in floats if torch.equal(got[k], state[k])]
    assert copied == []


# ------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A trained toy Runner checkpoint (for resume) and shifted weights."""
    root = tmp_path_factory.mktemp('strict')
    make_runner(str(root / 'run'), max_iters=2, interval=2).train()
    resume = torch.load(root / 'run' / 'iter_2.pth', weights_only=False)
    return dict(root=root, resume=resume,
                weights=shifted(resume['state_dict']))


@pytest.fixture(scope='module')
def detector(tmp_path_factory, make_shapes):
    """A tiny SSDLite config and its (shifted) full state dict."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    root = tmp_path_factory.mktemp('strict_detector')
    cfg = write_tiny_config(str(root / 'ssdlite.py'), 'ssdlite',
                            make_shapes(4, 2, 64, 0), with_test=True)
    init_default_scope('mmdet')
    state = shifted(MODELS.build(Config.fromfile(cfg).model).state_dict())
    return dict(config=cfg, state=state)


def runner_load(path, tmp_path, resume=False, hooks=None, **kwargs):
    """Load `path` into a fresh toy Runner; returns (runner, error)."""
    extra = {} if hooks is None else dict(custom_hooks=hooks)
    runner = make_runner(str(tmp_path / 'work'), load_from=path,
                         resume=resume, **extra, **kwargs)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.call_hook('before_run')  # as train/val/test do before loading
    with pytest.raises(CheckpointError) as exc:
        runner.load_or_resume()
    after = runner.model.state_dict()
    assert after.keys() == before.keys() and before
    assert all(after[k].equal(v) for k, v in before.items())
    return str(exc.value)


# -------------------------------------------- finding 3/4/5: bad entries
@pytest.mark.parametrize('kind', sorted(BAD))
def test_bad_entry_refused_by_load_from(kind, toy, tmp_path):
    path = bad_file(tmp_path / f'{kind}.pth', toy['weights'], kind)
    assert_named(runner_load(path, tmp_path), path, kind)


@pytest.mark.parametrize('kind', ['meta', 'nan'])
def test_bad_entry_refused_by_resume(kind, toy, tmp_path):
    checkpoint = dict(toy['resume'])
    checkpoint['state_dict'] = dict(toy['weights'])
    checkpoint['state_dict'][KEY] = BAD[kind][0](toy['weights'][KEY])
    path = str(tmp_path / f'resume_{kind}.pth')
    torch.save(checkpoint, path)
    assert_named(runner_load(path, tmp_path, resume=True), path, kind)


@pytest.mark.parametrize('kind', sorted(BAD))
def test_bad_entry_refused_by_load_pretrained_and_init_cfg(kind, toy,
                                                           tmp_path):
    backbone = {k: v for k, v in toy['weights'].items()
                if k.startswith('backbone.')}
    path = bad_file(tmp_path / f'{kind}.pth', backbone, kind)
    for use_init_cfg in (False, True):
        model = ReXNet(out_indices=(1, ), init_cfg=dict(
            type='Pretrained', checkpoint=path) if use_init_cfg else None)
        with pytest.raises(CheckpointMismatchError) as exc:
            model.init_weights() if use_init_cfg else \
                load_pretrained(model, path)
        assert_named(str(exc.value), path, kind)
        assert_nothing_copied(model, {k[len('backbone.'):]: v
                                      for k, v in backbone.items()})


def test_bad_entry_refused_by_tools_test(detector, tmp_path):
    """The reported case: one meta tensor in a whole detector file (every
    kind of entry goes through the same hook in the load_from tests)."""
    kind = 'meta'
    path = bad_file(tmp_path / f'{kind}.pth', detector['state'], kind)
    with pytest.raises(CheckpointMismatchError) as exc:
        load_tool('test.py').main([detector['config'], path, '--work-dir',
                                   str(tmp_path)])
    assert_named(str(exc.value), path, kind)
    runner = _runner_in(exc.value)
    assert_nothing_copied(runner.model, detector['state'])


def _runner_in(error):
    """The Runner tools/test.py built, from the failed call's frames."""
    tb = error.__traceback__
    while tb is not None:
        if 'runner' in tb.tb_frame.f_locals and \
                tb.tb_frame.f_code.co_name == 'main':
            return tb.tb_frame.f_locals['runner']
        tb = tb.tb_next
    raise AssertionError('tools/test.py built no Runner')


def test_nonfinite_opt_outs(toy, tmp_path):
    """NaN / Inf load only when asked, by name, on each route."""
    backbone = {k: v for k, v in toy['weights'].items()
                if k.startswith('backbone.')}
    path = bad_file(tmp_path / 'nan.pth', backbone, 'nan')
    model = ReXNet(out_indices=(1, ))
    load_pretrained(model, path, allow_nonfinite=True)
    assert torch.isnan(model.state_dict()[KEY[len('backbone.'):]]).sum() == 1
    model = ReXNet(out_indices=(1, ), init_cfg=dict(
        type='Pretrained', checkpoint=path, allow_nonfinite=True))
    model.init_weights()
    assert torch.isnan(model.state_dict()[KEY[len('backbone.'):]]).sum() == 1
    # a Runner: the hook's argument, or the config's allow_nonfinite_weights
    path = bad_file(tmp_path / 'inf.pth', toy['weights'], 'inf')
    for hook in (dict(type='StrictLoadHook', allow_nonfinite=True),
                 dict(type='StrictLoadHook')):
        runner = make_runner(str(tmp_path / 'w'), load_from=path,
                             custom_hooks=[hook])
        if 'allow_nonfinite' not in hook:
            runner.cfg.allow_nonfinite_weights = True
        runner.load_or_resume()
        assert torch.isinf(runner.model.state_dict()[KEY]).sum() == 1


def test_partial_load_still_refuses_garbage(toy, tmp_path):
    """allow_partial_load tolerates missing tensors, not garbage ones."""
    state = {k: v for k, v in toy['weights'].items()
             if k.startswith('backbone.')}
    path = bad_file(tmp_path / 'partial_int64.pth', state, 'int64')
    runner = make_runner(str(tmp_path / 'w'), load_from=path)
    runner.cfg.allow_partial_load = True
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as exc:
        runner.load_or_resume()
    assert_named(str(exc.value), path, 'int64')
    assert 'missing keys' not in str(exc.value)
    assert all(v.equal(before[k])
               for k, v in runner.model.state_dict().items())
    # without the garbage entry, the same partial file loads
    torch.save(dict(state_dict=state), path)
    runner.load_or_resume()
    assert torch.equal(runner.model.state_dict()[KEY], state[KEY])


# --------------------------------------------------------- finding 5: CRC
def _record_data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    name_len = int.from_bytes(raw[info.header_offset + 26:
                                  info.header_offset + 28], 'little')
    extra_len = int.from_bytes(raw[info.header_offset + 28:
                                   info.header_offset + 30], 'little')
    return info.header_offset + 30 + name_len + extra_len


def overwrite_in_largest_record(path, fill=b'\x00'):
    """Overwrite 4 KiB inside the largest tensor record, as a bad disk
    sector would; returns the record's name."""
    raw = bytearray(open(path, 'rb').read())
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    assert info.file_size >= 1024 and '/data/' in info.filename
    count = min(4096, info.file_size // 2)
    start = _record_data_offset(raw, info) + info.file_size // 4
    raw[start:start + count] = fill * count
    open(path, 'wb').write(bytes(raw))
    return info.filename


def test_crc_mismatch_refused_on_every_route(toy, tmp_path):
    """4 KiB of zeros in a record: torch's reader loads it silently (zeros
    pass the NaN check too); the CRC-32 check refuses it by name."""
    weights = str(tmp_path / 'toy.pth')
    torch.save(dict(state_dict=toy['weights']), weights)
    record = overwrite_in_largest_record(weights)
    loaded = torch.load(weights, weights_only=True)['state_dict']  # silent
    assert sum(not torch.equal(loaded[k], v)
               for k, v in toy['weights'].items()) == 1
    message = runner_load(weights, tmp_path)
    assert f'{weights}: record {record} is corrupt (BadZipFile: Bad ' \
        'CRC-32' in message

    backbone = str(tmp_path / 'backbone.pth')
    state = shifted(ReXNet().state_dict())
    torch.save(state, backbone)
    record = overwrite_in_largest_record(backbone, fill=b'\xff')  # NaNs
    for use_init_cfg in (False, True):
        model = ReXNet(init_cfg=dict(type='Pretrained', checkpoint=backbone)
                       if use_init_cfg else None)
        with pytest.raises(CheckpointError) as exc:
            model.init_weights() if use_init_cfg else \
                load_pretrained(model, backbone)
        assert f'{backbone}: record {record} is corrupt' in str(exc.value)
        assert_nothing_copied(model, state)


def test_file_saved_without_crcs_loads_with_a_warning(tmp_path):
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logger.addHandler(handler)
    path = str(tmp_path / 'nocrc.pth')
    state = ReXNet(out_indices=(1, )).state_dict()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert {i.CRC for i in archive.infolist()} == {0}
    model = ReXNet(out_indices=(1, ))
    try:
        load_pretrained(model, path)
    finally:
        logger.removeHandler(handler)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert f'{path} was saved without CRC-32 checksums' in log.getvalue()


# ------------------------------------------- finding 9: decompression bomb
def deflated_bomb(path, numel=16 << 20):
    """A torch checkpoint whose one tensor record (64 MiB of zeros) is
    deflated to ~65 KB: a 1000:1 bomb."""
    buf = io.BytesIO()
    torch.save({'state_dict': {KEY: torch.zeros(numel)}}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, 'w') as dst:
        for info in src.infolist():
            big = info.file_size > 1 << 20
            dst.writestr(info.filename, src.read(info),
                         compress_type=zipfile.ZIP_DEFLATED if big
                         else zipfile.ZIP_STORED, compresslevel=9)
    return str(path)


def test_decompression_bomb_refused_before_inflating(toy, tmp_path):
    path = deflated_bomb(tmp_path / 'bomb.pth')
    size = os.path.getsize(path)
    assert size < 100_000
    live = torch.load(path, weights_only=True)  # torch inflates it
    assert live['state_dict'][KEY].numel() == 16 << 20
    del live
    messages = [runner_load(path, tmp_path)]
    for load in (lambda: safe_torch_load(path),
                 lambda: load_pretrained(ReXNet(out_indices=(1, )), path)):
        with pytest.raises(CheckpointError) as exc:
            load()
        messages.append(str(exc.value))
    for message in messages:
        assert f'{path}: its records inflate to 64.0 MiB from a ' in message
        assert '-> 64.0 MiB), more than the limit of 10x' in message


def test_file_far_larger_than_the_model_is_refused(toy, tmp_path,
                                                   monkeypatch):
    """The Runner's model (told by StrictLoadHook) and load_pretrained's
    model bound what a file may hold, also when it is not compressed."""
    from rexnet_det.checkpoint import archive
    monkeypatch.setattr(archive, 'MODEL_SLACK', 0)
    state = dict(toy['weights'])
    state['junk'] = torch.zeros(4 << 20)  # 16 MiB, stored
    path = str(tmp_path / 'big.pth')
    torch.save(dict(state_dict=state), path)
    message = runner_load(path, tmp_path)
    assert f'{path}: it holds 16.' in message
    assert 'more than 8x the model being loaded' in message
    with pytest.raises(CheckpointError, match='more than 8x the model'):
        load_pretrained(ReXNet(out_indices=(1, )), path)
    assert archive._expected == []  # nothing left behind


# ----------------------------------------------- finding 16: the messages
def _safetensors_file(path):
    header = json.dumps({'w': {'dtype': 'F32', 'shape': [2],
                               'data_offsets': [0, 8]}}).encode()
    with open(path, 'wb') as f:
        f.write(len(header).to_bytes(8, 'little') + header + b'\0' * 8)
    return str(path)


def _zip_with_pickle(path, pickle_bytes):
    """A torch zip checkpoint whose data.pkl is `pickle_bytes` (written
    with correct CRCs: the pickle itself is what is broken)."""
    buf = io.BytesIO()
    torch.save({'a': 1}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, 'w') as dst:
        for info in src.infolist():
            data = pickle_bytes if info.filename.endswith('/data.pkl') \
                else src.read(info)
            dst.writestr(info.filename, data)
    return str(path)


def test_misleading_messages_are_fixed(detector, tmp_path):
    folder = tmp_path / 'a_folder.pth'
    folder.mkdir()
    fifo = str(tmp_path / 'pipe.pth')
    os.mkfifo(fifo)
    depth = 200_000
    cases = {
        str(folder): 'it is a directory, not a regular file',
        fifo: 'it is a FIFO (named pipe), not a regular file',
        _safetensors_file(tmp_path / 'model.safetensors'):
        'it is a safetensors file, not a PyTorch checkpoint',
        _zip_with_pickle(tmp_path / 'broken.pth', b'\x80\x02}q\x00\xff.'):
        'truncated or corrupt (its pickle is broken: byte 0xff is no '
        'pickle instruction)',
        _zip_with_pickle(tmp_path / 'deep.pth', b'\x80\x02' + b']' * depth
                         + b'a' * (depth - 1) + b'.'):
        "nests containers deeper than Python's recursion limit",
    }
    for path, expected in cases.items():
        for load in (lambda: safe_torch_load(path),
                     lambda: load_pretrained(ReXNet(out_indices=(1, )),
                                             path)):
            with pytest.raises(CheckpointError) as exc:
                load()
            message = str(exc.value)
            assert path in message and expected in message, message
            assert 'unsafe' not in message.lower()
            assert 'not found' not in message
    # the tools check the path the same way
    tool = load_tool('test.py')
    with pytest.raises(CheckpointError, match='is a directory, not a '
                       'regular file'):
        tool.build_cfg(tool.parse_args([detector['config'], str(folder)]))


def test_numpy_entries_are_refused_even_for_plain_loads(tmp_path):
    """unwrap_state_dict (the tools' entry) names non-tensor entries."""
    from rexnet_det.checkpoint import unwrap_state_dict
    state = {'a': torch.zeros(2), 'b': np.zeros(2, dtype=np.float32)}
    with pytest.raises(CheckpointMismatchError,
                       match=r'f.pth holds entries that are not dense '
                       r'tensors \(1\): b\.\* 1; b: of type numpy.ndarray'):
        unwrap_state_dict(state, 'f.pth')


def test_parent_pretrained_init_reaching_a_rexnet(toy, tmp_path):
    """mmengine's own Pretrained init of a whole model (strict=False): the
    ReXNet inside refuses its bad entry before anything is copied, naming
    the file, also for a hand-made dict without torch's _metadata."""
    from mmengine.model import BaseModule

    from tests.fixtures.toy_runner import ToyModel
    path = bad_file(tmp_path / 'parent.pth', toy['weights'], 'sparse')
    model = ToyModel()
    model.init_cfg = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(CheckpointMismatchError) as exc:
        BaseModule.init_weights(model)
    message = str(exc.value)
    assert f"{path} does not fit ReXNet at 'backbone.'" in message
    assert f'{KEY}: {BAD["sparse"][1]}' in message
    assert_nothing_copied(model, toy['weights'])
