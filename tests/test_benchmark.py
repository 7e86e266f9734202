"""The benchmark harness (tools/benchmark.py, tools/bench/): one run covers
every section, goals are judged from the one table, and the docs' tables
are exactly what tools/gen_tables.py makes from the committed results."""
import json
import os.path as osp
import shutil

import pytest

from tests.conftest import ROOT
from tools.bench import BenchmarkOptions, run_benchmark, update_record
from tools.bench.goals import GOALS, judge
from tools.bench.sections import discover
from tools.bench.tables import fill, render
from tools.gen_tables import documents, generate

RESULTS = osp.join(ROOT, 'benchmarks', 'results.json')
MARKER_NAMES = ('goals', 'backbones', 'alignment', 'alignment_profile',
                'eager_forms', 'eager_profile', 'training', 'memory',
                'ssdlite_latency', 'mask_rcnn_latency_128x128',
                'dynamic_vs_static', 'checkpoint_load', 'int8_detectors',
                'int8_backbones', 'compiled')


def _ratio(median, low=None, high=None):
    return dict(median=median, min=low or median, max=high or median)


def _both(wall, cpu):
    return dict(wall=_ratio(wall), cpu=_ratio(cpu))


def test_docs_tables_equal_the_committed_results():
    with open(RESULTS) as f:
        record = json.load(f)
    assert record['meta']['commit'] and record['meta']['cpu']['isa']
    texts = {p: open(p).read() for p in documents()}
    used = {name for text in texts.values() for name in MARKER_NAMES
            if f'<!-- bench:{name} -->' in text}
    assert used == set(MARKER_NAMES)
    # every table is in the docs, and the docs hold what the file makes
    assert set(render(record)) == set(MARKER_NAMES)
    assert generate(RESULTS) == {}


def test_every_goal_is_judged_in_the_committed_run():
    with open(RESULTS) as f:
        record = json.load(f)
    assert {g['name'] for g in record['goals']} == set(GOALS)
    assert judge(record['sections']) == record['goals']


def test_goals_pick_the_clock_and_the_best_runtime():
    rows = [
        dict(model='ReXNet-1.0x', runtime='eager', size=224, threads=1,
             per_flop=_both(1.5, 1.05)),
        dict(model='ReXNet-1.0x', runtime='eager fused', size=224,
             threads=1, speedup_vs_eval=_both(1.4, 1.2)),
        dict(model='ReXNet-1.0x', runtime='eager fused', size=224,
             threads=2, speedup_vs_eval=_both(1.4, 1.2)),
        dict(model='ReXNet-1.0x aligned x4', runtime='ort', size=224,
             threads=1, per_flop=_both(1.0, 1.3), vs_effnet=_both(1.0, 1.1)),
        dict(model='ReXNet-1.0x aligned x4', runtime='openvino', size=224,
             threads=1, per_flop=_both(1.0, 1.12)),
        # other sizes are not judged
        dict(model='ReXNet-1.0x', runtime='eager fused', size=320,
             threads=1, speedup_vs_eval=_both(9.0, 9.0)),
    ]
    sections = dict(
        backbones=dict(rows=rows),
        training=dict(ssdlite_batch=8, ssdlite_size=320,
                      ssdlite_ratio=_both(1.0, 1.4)),
        memory=dict(batch=2, size=512, peak_saving=0.3))
    goals = {(g['name'], g['where']): g for g in judge(sections)}
    assert sorted(goals) == [
        ('cp_memory_saving', 'batch 2, 512 px'),
        ('fused_speedup', '1 thread(s)'), ('fused_speedup', '2 thread(s)'),
        ('latency_vs_effnet', '1 thread(s)'),
        ('per_flop_deployed', '1 thread, openvino'),
        ('per_flop_eager', '1 thread'),
        ('train_ratio', 'batch 8, 320 px, 1 thread')]
    # one thread: the CPU clock; two: the wall clock
    assert goals['fused_speedup', '1 thread(s)']['value'] == 1.2
    assert not goals['fused_speedup', '1 thread(s)']['met']
    assert goals['fused_speedup', '2 thread(s)']['value'] == 1.4
    assert goals['fused_speedup', '2 thread(s)']['met']
    assert goals['per_flop_eager', '1 thread']['met']  # 1.05 <= 1.1
    best = goals['per_flop_deployed', '1 thread, openvino']
    assert best['value'] == 1.12 and best['met']  # <= 1.15
    assert not goals['latency_vs_effnet', '1 thread(s)']['met']
    assert not goals['train_ratio', 'batch 8, 320 px, 1 thread']['met']
    assert goals['cp_memory_saving', 'batch 2, 512 px']['met']
    assert {g['limit'] for g in goals.values()} == {
        GOALS[name].limit for name, _ in goals}


def _int8_row(model, runtime, speedup=None, vs_peer=None):
    row = dict(model=model, runtime=runtime, threads=1, size=224)
    if speedup:
        row['int8_speedup'] = _both(speedup, speedup)
    if vs_peer:
        row['vs_peer'] = _both(vs_peer, vs_peer)
    return row


def test_int8_speed_goals_count_only_on_a_cpu_with_vnni():
    ours = 'SSDLite-ReXNet-1.0x aligned INT8'
    result = dict(
        detectors=[_int8_row(ours, 'ort', 1.7, 0.9),
                   _int8_row('SSDLite-MobileNetV2 INT8', 'ort', 1.2)],
        backbones=[_int8_row('ReXNet-1.0x aligned x4 INT8', 'ort', 1.1,
                             1.05)])
    with_vnni = {g['name']: g for g in judge(dict(int8=dict(result,
                                                           vnni=True)))}
    assert sorted(with_vnni) == ['int8_backbone_vs_effnet', 'int8_speedup',
                                 'int8_vs_fp32_mbv2']
    assert with_vnni['int8_speedup']['met']  # 1.7 >= 1.6
    assert with_vnni['int8_vs_fp32_mbv2']['met']  # 0.9 <= 1.0
    assert not with_vnni['int8_backbone_vs_effnet']['met']  # 1.05 > 1.0
    without = judge(dict(int8=dict(result, vnni=False)))
    assert [g['name'] for g in without] == ['int8_backbone_vs_effnet']


def test_update_record_replaces_sections_and_judges_again():
    meta = dict(commit='a', dirty=False, date='d0', command='first',
                load_average_start=[1.0], load_average_end=[1.0],
                section_seconds=dict(memory=1.0), threads=[1])
    old = dict(meta=meta, options={}, goals=[], sections=dict(
        memory=dict(batch=2, size=512, peak_saving=0.1)))
    new = dict(meta=dict(meta, commit='b', date='d1', command='second',
                         section_seconds=dict(training=1.0)),
               options=dict(threads=[1]), sections=dict(training=dict(
                   ssdlite_batch=8, ssdlite_size=320,
                   ssdlite_ratio=_both(1.0, 1.2))))
    merged = update_record(old, new)
    assert sorted(merged['sections']) == ['memory', 'training']
    assert merged['meta']['command'] == 'first'
    assert [(u['command'], u['commit'], u['sections'])
            for u in merged['meta']['updates']] == [
        ('second', 'b', ['training'])]
    assert [(g['name'], g['met']) for g in merged['goals']] == [
        ('cp_memory_saving', False), ('train_ratio', True)]
    assert old['sections'] == dict(memory=dict(batch=2, size=512,
                                               peak_saving=0.1))


def test_fill_replaces_only_marker_bodies_and_names_unknown_tables():
    text = ('keep\n<!-- bench:a -->\nold\n<!-- /bench:a -->\nmiddle\n'
            '<!-- bench:b -->\n<!-- /bench:b -->\nend\n')
    assert fill(text, dict(a='A', b='B')) == (
        'keep\n<!-- bench:a -->\nA\n<!-- /bench:a -->\nmiddle\n'
        '<!-- bench:b -->\nB\n<!-- /bench:b -->\nend\n')
    with pytest.raises(KeyError, match=r'bench:b --> names no table'):
        fill(text, dict(a='A'))


def test_gen_tables_finds_a_stale_table_and_a_missing_file(tmp_path):
    shutil.copytree(osp.join(ROOT, 'docs'), tmp_path / 'docs')
    readme = open(osp.join(ROOT, 'README.md')).read()
    (tmp_path / 'README.md').write_text(readme.replace(
        '<!-- bench:goals -->\n', '<!-- bench:goals -->\nstale row\n', 1))
    changed = generate(RESULTS, str(tmp_path))
    assert list(changed) == [str(tmp_path / 'README.md')]
    assert changed[str(tmp_path / 'README.md')] == readme
    with pytest.raises(FileNotFoundError, match='results file not found: '
                       'nope.json'):
        generate('nope.json')


def test_options_name_bad_values():
    with pytest.raises(ValueError, match=r'threads must be positive, got '
                       r'\[0\]'):
        BenchmarkOptions(threads=[0])
    with pytest.raises(ValueError, match=r'sizes must be >= 32, got \[16\]'):
        BenchmarkOptions(sizes=[16])
    with pytest.raises(ValueError, match='detector_size must be a multiple '
                       'of 32, got 100'):
        BenchmarkOptions(detector_size=100)
    with pytest.raises(ValueError, match=r"only: unknown sections "
                       r"\['gpu'\]"):
        run_benchmark(BenchmarkOptions(only=['gpu']), log=None)
    with pytest.raises(ValueError, match=r"skip: unknown sections "
                       r"\['gpu'\]"):
        run_benchmark(BenchmarkOptions(skip=['gpu']), log=None)


@pytest.fixture(scope='module')
def quick():
    """One --quick run of every section (a smoke test, not a measurement),
    without the two-stage detectors (their export and runtime are
    tests/test_deploy_two_stage.py's; the committed run has their rows)."""
    opts = BenchmarkOptions(quick=True, command='python tools/benchmark.py '
                            '--quick --out quick.json')
    opts.mask_image_sizes = ()
    return run_benchmark(opts, log=None)


def test_quick_run_covers_every_section_and_goal(quick):
    assert list(quick['sections']) == list(discover()) == [
        'backbones', 'compiled', 'eager_forms', 'alignment', 'detectors',
        'int8', 'training', 'memory', 'checkpoint_load']
    json.dumps(quick)  # the record is plain JSON
    meta = quick['meta']
    assert meta['versions']['torch'] and meta['threads'] == [1]
    assert list(meta['section_seconds']) == list(quick['sections'])
    # --quick times no Mask R-CNN image, so no dynamic-vs-fixed goal; the
    # INT8 speed goals count only on a CPU with VNNI or AMX
    int8 = quick['sections']['int8']
    skipped = {'dynamic_slowdown'} | (
        set() if int8['vnni'] else {'int8_speedup', 'int8_vs_fp32_mbv2'})
    assert {g['name'] for g in quick['goals']} == set(GOALS) - skipped
    assert int8['vnni'] == bool({'avx512_vnni', 'avx_vnni', 'amx_int8'} &
                                set(meta['cpu']['isa']))
    # FP32 and INT8 of 2 detectors / 3 backbones on 2 runtimes
    for part, count in (('detectors', 8), ('backbones', 12)):
        keys = [(r['model'], r['runtime']) for r in int8[part]]
        assert len(keys) == len(set(keys)) == count
        assert all(('int8_speedup' in r) == (r['precision'] == 'INT8') ==
                   r['model'].endswith(' INT8') for r in int8[part])
        # the ratio to the peer: on the INT8 ReXNet rows, one per runtime
        ours = ('SSDLite-ReXNet-1.0x aligned INT8' if part == 'detectors'
                else 'ReXNet-1.0x aligned x4 INT8')
        assert sorted((r['model'], r['runtime']) for r in int8[part]
                      if 'vs_peer' in r) == [(ours, 'openvino'),
                                             (ours, 'ort')]
    compiled = quick['sections']['compiled']
    (group, ) = compiled['groups']
    assert compiled['backend'] == 'eager' and group['size'] == 64
    forms = [(r['model'], r['form']) for r in group['rows']]
    assert forms == [(m, f) for m in ('ReXNet-1.0x', 'EfficientNet-B0',
                                      'MobileNetV2')
                     for f in ('eager', 'compiled')] + [
        ('ReXNet-1.0x', 'onnxruntime aligned'),
        ('MobileNetV2', 'onnxruntime aligned')]
    assert all(('compile_s' in r) == (r['form'] == 'compiled')
               for r in group['rows'])
    rows = quick['sections']['backbones']['rows']
    pairs = [(r['model'], r['runtime']) for r in rows]
    # 7 ORT, 5 OpenVINO, 8 eager, 2 more eager forms of ReXNet-1.0x
    assert len(pairs) == len(set(pairs)) == 22
    # a peer against itself: exactly 1 on both clocks, every runtime
    peer = [r for r in rows if r['model'] == 'MobileNetV2']
    assert [r['runtime'] for r in peer] == ['ort', 'openvino', 'eager',
                                            'eager fused']
    assert all(r['per_flop'][c] == _ratio(1.0) for r in peer
               for c in ('wall', 'cpu'))
    forms = [r['runtime'] for r in rows if r['model'] == 'ReXNet-1.0x']
    assert forms == ['eager', 'eager fused', 'eager fused NCHW',
                     'eager aligned + fused']
    assert all('speedup_vs_eval' in r for r in rows
               if r['runtime'].startswith('eager '))
    training = quick['sections']['training']
    assert training['mask_rcnn']['losses_max_abs_diff'] == 0
    assert quick['sections']['memory']['losses_max_abs_diff'] == 0
    ssdlite = quick['sections']['detectors']['ssdlite']['rows']
    assert {(r['model'], r['runtime']) for r in ssdlite} == {
        (m, rt) for m in ('SSDLite-ReXNet-1.0x', 'SSDLite-MobileNetV2',
                          'SSDLite-ReXNet-1.0x aligned')
        for rt in ('pytorch', 'ort', 'openvino')}
    tables = render(quick)
    assert set(tables) == set(MARKER_NAMES) - {'mask_rcnn_latency_128x128',
                                              'dynamic_vs_static'}
    assert tables['int8_detectors'].count('\n| ') == 8
    # 8 rows, then the goal ratios' header and one line per group
    assert tables['compiled'].count('\n| ') == 8 + 2
    assert tables['backbones'].count('\n| ') == 22  # one line per row
    assert tables['eager_forms'].count('\n| ') == 4
    # each table names the command that made it
    assert all('`python tools/benchmark.py --quick --out quick.json`, then '
               '`python tools/gen_tables.py' in t for t in tables.values())


def test_benchmark_cli_names_an_unknown_section(tmp_path):
    from tests.conftest import load_tool
    tool = load_tool('benchmark.py')
    with pytest.raises(SystemExit, match=r"unknown sections \['gpu'\]"):
        tool.main(['--only', 'gpu', '--out', str(tmp_path / 'r.json')])
    assert not (tmp_path / 'r.json').exists()
