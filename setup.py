"""Installable package rexnet_det.

mmcv must be built from source with its compiled ops before this package is
installed (``make setup`` does it in the right order); see README.md.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'rexnet_det', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='rexnet_det',
    version=read_version(),
    description='ReXNet backbones for MMDetection: official-checkpoint '
    'parity, SSDLite / Mask R-CNN configs, tools',
    long_description=open('README.md').read() if osp.exists('README.md')
    else '',
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.9',  # math.lcm (deploy/detector/export.py)
    packages=find_packages(include=['rexnet_det', 'rexnet_det.*']),
    # configs ship inside the package (rexnet_det/.mim/configs links to the
    # top-level configs/) so `rexnet_det::...` bases resolve after install.
    package_data={'rexnet_det': ['.mim/configs/*/*.py', '.mim/configs/*.py',
                                 '.mim/configs/*/*/*.py',
                                 '.mim/configs/*.yml',
                                 '.mim/model-index.yml']},
    include_package_data=True,
    install_requires=[
        'torch>=2.6,<2.14',  # 2.6: safe_globals entries as (obj, name)
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmengine>=0.10.0,<0.11.0',
        'mmdet>=3.3.0,<3.4.0',
        'pycocotools>=2.0.6',
        'numpy>=1.23',
    ],
    extras_require={'tests': read_requirements('tests.txt'),
                    'deploy': read_requirements('deploy.txt')},
    zip_safe=False,
)
