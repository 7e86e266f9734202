"""The benchmark's sections: one module each, found here by name.

A section module defines

* ``NAME`` (str) and ``ORDER`` (int, the run order);
* ``run(opts: BenchmarkOptions) -> dict``: its measurements, JSON-ready;
* ``tables(result: dict) -> Dict[str, str]``: the Markdown tables the docs
  show, by table name (``tools/gen_tables.py`` puts each between
  ``<!-- bench:NAME -->`` markers).

Adding a comparison (compiled rows, INT8 rows, ...) is adding one module
here; goals it should meet go in :mod:`tools.bench.goals`.
"""
import importlib
import pkgutil
from types import ModuleType
from typing import Dict


def discover() -> Dict[str, ModuleType]:
    """Section name -> module, in run order."""
    modules = [importlib.import_module(f'{__name__}.{info.name}')
               for info in pkgutil.iter_modules(__path__)]
    modules = [m for m in modules if hasattr(m, 'run')]
    names = [m.NAME for m in modules]
    if len(set(names)) != len(names):
        raise RuntimeError(f'section names must be unique, got {names}')
    return {m.NAME: m for m in sorted(modules, key=lambda m: m.ORDER)}
