"""Numerical parity with the official clovaai code and with timm.

The reference outputs in tests/fixtures/parity/ were produced by the
reference implementations themselves (tools/reference/make_parity_fixtures.py,
run in a throwaway venv). Weights are regenerated here from the stored seed
and key list in the *reference* layout, then loaded through rexnet_det's
converters, so these tests also cover the checkpoint conversion.
"""
import json
import os.path as osp

import pytest
import torch

from rexnet_det import ReXNet, ReXNetClassifier, load_pretrained

from .fixtures.synthetic_weights import (relative_error, sample_indices,
                                         synthetic_input,
                                         synthetic_state_dict)

FIXTURES = osp.join(osp.dirname(__file__), 'fixtures', 'parity')
with open(osp.join(FIXTURES, 'index.json')) as f:
    INDEX = json.load(f)
TOLERANCE = 1e-4


def reference(name):
    entry = INDEX['models'][name]
    outputs = torch.load(osp.join(FIXTURES, f'{name}.pt'), weights_only=True)
    state = synthetic_state_dict(entry['seed'], entry['keys'])
    return entry, outputs, state


def compare(actual, outputs, size, key, shape):
    assert list(actual.shape) == shape, (key, size)
    flat = actual.flatten()
    idx = sample_indices(flat.numel(), INDEX['max_values'])
    values = outputs[f'{size}/{key}/values']
    assert idx.numel() == values.numel()
    assert relative_error(flat[idx], values) < TOLERANCE, (size, key)
    mean = actual.mean(dim=tuple(d for d in range(actual.dim()) if d != 1))
    assert relative_error(mean, outputs[f'{size}/{key}/channel_mean']) < \
        TOLERANCE, (size, key)


def test_fixture_index_covers_required_models():
    assert {'clovaai_v1_1.0', 'clovaai_v1_1.3', 'clovaai_lite_1.0',
            'timm_rexnet_100', 'timm_rexnet_150'} <= set(INDEX['models'])
    assert INDEX['sizes'] == [[224, 224], [257, 321]]


@pytest.mark.parametrize('name', ['clovaai_v1_1.0', 'clovaai_v1_1.3',
                                  'clovaai_lite_1.0', 'timm_rexnet_100',
                                  'timm_rexnet_150'])
def test_classifier_and_taps_match_reference(name):
    entry, outputs, state = reference(name)
    width, arch = entry['width_mult'], entry['arch']
    classifier = ReXNetClassifier(width_mult=width, arch=arch)
    info = load_pretrained(classifier, state)
    assert info['format'] == entry['layout']
    assert len(info['loaded']) == len(classifier.state_dict())
    assert sum(p.numel() for p in classifier.parameters()) == \
        entry['num_params']
    backbone = ReXNet(width_mult=width, arch=arch,
                      out_indices=(0, 1, 2, 3, 4, 5))
    load_pretrained(backbone, state)
    classifier.eval()
    backbone.eval()
    compared = 0
    for h, w in INDEX['sizes']:
        size = f'{h}x{w}'
        x = synthetic_input(entry['seed'] + h * 1000 + w, (1, 3, h, w))
        expected = entry['outputs'][size]
        with torch.no_grad():
            logits = classifier(x)
            taps = backbone(x)
        compare(logits, outputs, size, 'logits', expected['logits'])
        compared += 1
        for i, tap in enumerate(taps):
            if f'tap{i}' in expected:
                compare(tap, outputs, size, f'tap{i}', expected[f'tap{i}'])
                compared += 1
    # clovaai: logits + 6 taps; timm: logits + 5 features_only maps
    assert compared == 2 * (7 if entry['layout'] == 'clovaai' else 6)


@pytest.mark.parametrize('name', ['timm_rexnet_100', 'timm_rexnet_150'])
def test_timm_feature_info_matches(name):
    entry = INDEX['models'][name]
    model = ReXNet(width_mult=entry['width_mult'],
                   out_indices=(0, 1, 2, 3, 4))
    ours = [(i['num_chs'], i['reduction']) for i in model.feature_info[:5]]
    timm = [(i['num_chs'], i['reduction']) for i in entry['feature_info']]
    assert ours == timm and len(ours) == 5
    # timm names blocks 'features.N'; ours 'blocks.N' at the same N
    assert [i['module'].split('.')[-1] for i in model.feature_info[:5]] == \
        [i['module'].split('.')[-1] for i in entry['feature_info']]
