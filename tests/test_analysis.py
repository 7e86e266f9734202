"""FLOPs tool vs the paper, interleaved timing, sgemm peak, rank study, GPU
throughput tool."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from tools.lib.complexity import complexity
from tools.lib.rank import rank_measures, random_layer_study
from tools.lib.timing import Case, measure, paired_ratio

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Parameter counts (1000-class head) that timm publishes for rexnet_100 ..
# rexnet_200; the paper rounds them to 4.8 / 7.6 / 9.7 / 16 M.
TIMM_PARAMS_M = {1.0: 4.80, 1.3: 7.56, 1.5: 9.73, 2.0: 16.37}


def load_tool(name):
    """Import tools/analysis/<name>.py (the tools are scripts)."""
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def get_flops():
    return load_tool('get_flops')


@pytest.mark.parametrize('width', sorted(TIMM_PARAMS_M))
def test_flops_and_params_agree_with_the_paper(width):
    from rexnet_det.models import get_variant
    row = complexity(f'rexnet-{width}x')
    paper = get_variant(f'rexnet-{width}x')
    assert row['kind'] == 'classifier' and (row['height'], row['width']) \
        == (224, 224)
    assert round(row['params'] / 1e6, 2) == TIMM_PARAMS_M[width]
    # the paper rounds: 16M for 16.37M; FLOPs agree within 2%
    assert abs(row['params'] / 1e6 - paper.params_m) < 0.4
    assert abs(row['macs'] / 1e9 / paper.flops_g - 1) < 0.02
    assert row['paper_flops_g'] == paper.flops_g
    # mmengine's total also counts one op per BatchNorm element
    assert row['flops'] == row['macs'] + row['by_operator']['batch_norm']
    assert set(row['by_operator']) == {'conv', 'linear', 'batch_norm'}


def test_flops_of_backbone_and_detector():
    backbone = complexity('rexnet-1.0x-backbone', (320, 320))
    assert backbone['kind'] == 'backbone' and 'paper_flops_g' not in backbone
    # the exact classifier count minus its 1280 x 1000 fc and bias
    assert backbone['params'] == 4_796_873 - 1280 * 1000 - 1000
    # conv MACs grow with the pixel count
    at_224 = complexity('rexnet-1.0x-backbone')
    assert backbone['macs'] / at_224['macs'] == pytest.approx(
        (320 / 224)**2, rel=0.03)
    det = complexity(
        'rexnet_det::ssdlite/ssdlite_rexnet-1.0x_8xb24-600e_coco.py',
        (64, 64))
    assert det['kind'] == 'detector' and (det['height'], det['width']) == \
        (64, 64)
    assert det['parts']['backbone'] == backbone['params'] == \
        det['backbone']['params']
    assert 0 < det['backbone']['macs'] < det['macs']
    assert det['params'] > backbone['params'] and det['macs'] > 0


@pytest.mark.parametrize('arg, message', [
    ('resnet-50', "unknown model name 'resnet-50'; expected rexnet-<width>x"),
    ('rexnet-1.0', "unknown model name 'rexnet-1.0'"),
    ('configs/nope/missing.py', 'config file not found: '
     'configs/nope/missing.py'),
    ('mmdet::nope/missing.py', 'config file not found: '
     'mmdet::nope/missing.py'),
    ('work_dirs/missing.pth', "checkpoint 'work_dirs/missing.pth' does "
     'not exist'),
])
def test_get_flops_bad_arguments(get_flops, arg, message):
    with pytest.raises(SystemExit, match=message):
        get_flops.main([arg])


def test_interleaved_timing_and_paired_ratio():
    calls = []
    cases = [Case('a', lambda: calls.append('a'), batch=2),
             Case('b', lambda: calls.append('b'), batch=1)]
    timings = measure(cases, rounds=3, calls=2, warmup=1)
    # warm-up, then the order rotates every round
    assert calls == ['a', 'b'] + ['a'] * 2 + ['b'] * 2 + ['b'] * 2 + \
        ['a'] * 2 + ['a'] * 2 + ['b'] * 2
    assert [len(r) for r in timings['a'].wall] == [2, 2, 2]
    summary = timings['a'].summary()
    assert summary['batch'] == 2 and summary['calls'] == 6
    assert summary['images_per_s'] == pytest.approx(2e3 / summary['p50_ms'])
    ratio = paired_ratio(timings['a'], timings['b'])
    assert ratio['rounds'] == 3 and ratio['min'] <= ratio['median'] <= \
        ratio['max']
    with pytest.raises(ValueError, match='unique'):
        measure([cases[0], cases[0]], 1, 1)


def test_rank_measures_on_known_matrices():
    eye = torch.eye(6)
    # removing each row's mean takes one dimension away from the identity
    assert rank_measures(eye) == dict(strict=1.0, significant=1.0,
                                      effective=pytest.approx(1.0),
                                      significant_centered=5 / 6)
    low = torch.randn(8, 3, dtype=torch.float64) @ torch.randn(
        3, 40, dtype=torch.float64)
    measures = rank_measures(low)
    assert measures['strict'] == 3 / 8
    assert measures['effective'] <= 3 / 8 + 1e-9
    with pytest.raises(ValueError, match="unknown activations \\['gelu'\\]"):
        random_layer_study([1.0], activations=['gelu'])


def test_rank_study_quick_plot_table_and_ordering(tmp_path):
    tool = load_tool('rank_study')
    png = tmp_path / 'rank.png'
    result = tool.main(['--quick', '--out', str(png), '--json',
                        str(tmp_path / 'rank.json')])
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = (tmp_path / 'rank.md').read_text()
    assert '| d_out/d_in | linear | relu | relu6 | silu |' in table
    assert '| blocks.15 | 185 | 32 | 6 |' in table
    study = result['study']
    ratios = study['ratios']
    small = [i for i, r in enumerate(ratios) if 1 <= r <= 2]
    assert small
    sig = study['mean']
    # the paper's finding: SiLU keeps a higher rank than ReLU6
    for i in small:
        assert sig['silu']['significant'][i] > sig['relu6']['significant'][i]
    # expanding a linear layer loses rank exactly as 1 / ratio
    for i, r in enumerate(ratios):
        assert sig['linear']['strict'][i] == pytest.approx(min(1, 1 / r),
                                                           abs=0.02)
    assert len(result['blocks']['rows']) == 18  # stem, 16 blocks, pen
    assert json.loads((tmp_path / 'rank.json').read_text())['png'] == \
        str(png)


def test_sgemm_peak_is_the_fastest_round_and_restores_threads(
        monkeypatch):
    import tools.lib.peak as peak
    # a clock whose two timed products take 0.4 s and 0.2 s
    ticks = iter([10.0, 10.4, 11.0, 11.2])
    monkeypatch.setattr(peak.time, 'perf_counter', lambda: next(ticks))
    before = torch.get_num_threads()
    gflops = peak.sgemm_peak_gflops(threads=1, n=64, rounds=2)
    assert gflops == pytest.approx(2 * 64**3 / 0.2 / 1e9)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match='threads must be >= 1, got 0'):
        peak.sgemm_peak_gflops(threads=0)


def test_gpu_throughput_tool_runs_without_mmcv_compiled_ops(tmp_path):
    # the rented GPU machine has no mmcv._ext: block it and run the tool
    out = tmp_path / 'gpu.json'
    code = ("import sys; sys.modules['mmcv._ext'] = None; "
            f"sys.argv = ['gpu_throughput', '--device', 'cpu', '--batch', "
            f"'2', '--size', '64', '--rounds', '2', '--iters', '1', "
            f"'--warmup', '1', '--no-peers', '--no-parity', '--amp', "
            f"'bfloat16', '--json', {str(out)!r}]; "
            "import runpy; runpy.run_path('tools/analysis/gpu_throughput.py',"
            " run_name='__main__'); "
            "assert not [m for m in sys.modules if m.startswith('mmcv.ops')]")
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())['rows']
    assert [(r['model'], r['mode']) for r in rows] == [
        ('ReXNet-1.0x (rexnet_det)', 'infer'),
        ('ReXNet-1.0x (rexnet_det)', 'train')]
    assert all(r['images_per_s'] > 0 for r in rows)
    assert rows[0]['params_m'] == pytest.approx(4.797, abs=1e-3)
    assert '| ReXNet-1.0x (rexnet_det) | infer | 4.80 |' in proc.stdout


def test_gpu_throughput_rejects_bad_arguments():
    from tools.lib.gpu_throughput import measure_throughput
    with pytest.raises(ValueError, match="amp must be one of .*'fp8'"):
        measure_throughput(amp='fp8', device='cpu')
    with pytest.raises(ValueError, match="'eval'"):
        measure_throughput(modes=['eval'], device='cpu')


def test_gpu_throughput_steps_set_their_own_mode():
    # one model serves both steps: inference must not run in train mode
    from tools.lib.gpu_throughput import _step_fn
    from rexnet_det.models import ReXNetClassifier
    model = ReXNetClassifier()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    infer = _step_fn(model, 'infer', 2, 32, None, torch.device('cpu'))
    train = _step_fn(model, 'train', 2, 32, None, torch.device('cpu'))
    infer()
    train()
    infer()
    assert seen == [False, True, False]
