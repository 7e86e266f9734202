"""Regenerate the benchmark tables in README.md and docs/*.md from a
results file (``tools/benchmark.py``): every ``<!-- bench:NAME -->`` ...
``<!-- /bench:NAME -->`` block gets the table NAME, followed by the
command and the machine that made it.

Examples::

    python tools/gen_tables.py benchmarks/results.json
    python tools/gen_tables.py benchmarks/results.json --check  # exit 1 if stale
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from rexnet_det.utils.io import atomic_write  # noqa: E402
from tools.bench.tables import fill, render  # noqa: E402


def documents(root: str = ROOT) -> List[str]:
    """README.md and every docs/*.md."""
    return [osp.join(root, 'README.md')] + sorted(
        glob.glob(osp.join(root, 'docs', '*.md')))


def generate(results: str, root: str = ROOT) -> Dict[str, str]:
    """Path -> regenerated text, for every document whose text changes.

    Raises:
        FileNotFoundError: `results` does not exist.
        KeyError: A marker names a table the results do not have.
    """
    if not osp.isfile(results):
        raise FileNotFoundError(f'results file not found: {results}')
    with open(results) as f:
        tables = render(json.load(f))
    changed = {}
    for path in documents(root):
        with open(path) as f:
            text = f.read()
        try:
            new = fill(text, tables)
        except KeyError as e:
            raise KeyError(f'{osp.relpath(path, root)}: {e.args[0]}') from None
        if new != text:
            changed[path] = new
    return changed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', help='a tools/benchmark.py JSON file')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if a table is stale')
    args = parser.parse_args(argv)
    try:
        changed = generate(args.results)
    except (FileNotFoundError, KeyError) as e:
        parser.error(str(e.args[0]))
    for path, text in changed.items():
        print(('stale: ' if args.check else 'updated: ') +
              osp.relpath(path, ROOT))
        if not args.check:
            atomic_write(text, path)
    return 1 if args.check and changed else 0


if __name__ == '__main__':
    sys.exit(main())
