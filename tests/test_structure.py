"""The package's shape: floors without a circle, and a one-way street
between the package and ``tools/`` (tools import the package, never the
reverse).

Read from the source with ``ast`` (nothing is imported), so the test sees
every import, lazy ones inside functions included.
"""
import ast
import os
import os.path as osp
from typing import Dict, List, Set

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'rexnet_det')

# Each subpackage may import only from its own floor or the ones below.
FLOORS = {
    'utils': 0, 'version': 0, 'registry': 0,
    'models': 1,
    'checkpoint': 2,
    'engine': 3, 'datasets': 3, 'evaluation': 3,
    'deploy': 4,
    'integration': 5,
}


def _modules() -> Dict[str, str]:
    """Dotted module name -> file, for every module of the package."""
    mods = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            rel = osp.relpath(osp.join(folder, name), ROOT)[:-3]
            dotted = rel.replace(os.sep, '.')
            if dotted.endswith('.__init__'):
                dotted = dotted[:-len('.__init__')]
            mods[dotted] = osp.join(folder, name)
    return mods


def _imports(module: str, path: str, modules: Set[str]) -> Set[str]:
    """The package modules `module` imports (anywhere in the file)."""
    is_package = path.endswith('__init__.py')
    parts = module.split('.')
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = '.'.join(parts[:keep] +
                                ([node.module] if node.module else []))
            else:
                base = node.module or ''
            names = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules
                     else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition('.')[0]
            if name.startswith('rexnet_det') and name != module:
                found.add(name)
    return found


def _top_level_imports(path: str) -> Set[str]:
    """First components of every absolute import in `path`."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add((node.module or '').split('.')[0])
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _floor(module: str) -> int:
    return FLOORS[module.split('.')[1]]


def test_graph_sees_the_package():
    graph = _graph()
    assert len(graph) > 40
    # a known downward edge, so the parser is not silently blind
    assert 'rexnet_det.models' in graph['rexnet_det.checkpoint.loader']
    assert 'rexnet_det.utils.errors' in graph['rexnet_det.checkpoint']


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == \
        [['a', 'b', 'c']]


def test_floors_import_only_downward():
    graph = _graph()
    upward = [f'{src} -> {dst}' for src, dsts in graph.items()
              if src != 'rexnet_det' for dst in dsts
              if dst == 'rexnet_det' or _floor(dst) > _floor(src)]
    checked = [src for src in graph if src != 'rexnet_det']
    assert checked and all(src.split('.')[1] in FLOORS for src in checked)
    assert upward == []


def test_package_never_imports_tools():
    modules = _modules()
    importing = sorted(m for m, path in modules.items()
                       if 'tools' in _top_level_imports(path))
    assert modules and importing == []
    # the checker sees an import of tools where there is one
    tool = osp.join(ROOT, 'tools', 'analysis', 'get_flops.py')
    assert {'tools', 'rexnet_det'} <= _top_level_imports(tool)


def test_readme_keeps_the_two_commands():
    with open(osp.join(ROOT, 'README.md')) as f:
        lines = f.read().splitlines()
    assert any(line.startswith('make demo') for line in lines)
    assert any(line.startswith('make test') for line in lines)
