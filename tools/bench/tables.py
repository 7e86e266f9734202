"""Markdown tables from a results file: each section's own tables, the
goals and the machine line. ``tools/gen_tables.py`` writes them into the
docs between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``."""
import re
from typing import Dict

from .sections import discover

MARKER = re.compile(r'(<!-- bench:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)'
                    r'(<!-- /bench:(?P=name) -->)', re.S)


def machine_line(meta: dict) -> str:
    """Where and when the figures were measured."""
    cpu = meta['cpu']
    v = meta['versions']
    start, end = meta['load_average_start'], meta['load_average_end']
    return (f'{cpu["model"]} ({cpu["logical_cpus"]} logical CPUs; '
            f'{", ".join(cpu["isa"])}), torch {v["torch"]}, onnxruntime '
            f'{v["onnxruntime"]}, OpenVINO {v["openvino"]}; commit '
            f'{(meta["commit"] or "?")[:7]}{" (dirty)" if meta["dirty"] else ""}'
            f', {meta["date"]}; load average {start[0]:.1f} at the start, '
            f'{end[0]:.1f} at the end')


def goals_table(goals: list) -> str:
    lines = ['| goal | where | value [min-max over rounds] | limit | met |',
             '|---|---|---|---|---|']
    for g in goals:
        sign = '>=' if g['better'] == 'higher' else '<='
        lines.append(f'| {g["name"]}: {g["what"]} | {g["where"]} | '
                     f'{g["value"]:.3f} [{g["min"]:.3f}-{g["max"]:.3f}] | '
                     f'{sign} {g["limit"]:.3g} | '
                     f'{"yes" if g["met"] else "**no**"} |')
    return '\n'.join(lines)


def render(record: dict) -> Dict[str, str]:
    """Table name -> Markdown body (a table, then the command and the
    machine that produced it: for a section added by ``--update``, that
    run's)."""
    meta = record['meta']

    def footer(run: dict) -> str:
        return (f'\n\n<sub>`{run["command"]}`, then `python '
                f'tools/gen_tables.py benchmarks/results.json`; '
                f'{machine_line(dict(meta, **run))}.</sub>')
    by_section = {name: update for update in meta.get('updates', [])
                  for name in update['sections']}
    sections = discover()
    out = dict(goals=goals_table(record['goals']) + footer(meta))
    for name, result in record['sections'].items():
        end = footer(by_section.get(name, meta))
        out.update({k: v + end
                    for k, v in sections[name].tables(result).items()})
    return out


def fill(text: str, tables: Dict[str, str]) -> str:
    """`text` with the body between each ``bench:NAME`` marker pair
    replaced by ``tables[NAME]``.

    Raises:
        KeyError: A marker names a table the results do not have.
    """
    def replace(m: re.Match) -> str:
        name = m.group('name')
        if name not in tables:
            raise KeyError(f'<!-- bench:{name} --> names no table of the '
                           f'results file; it has {sorted(tables)}')
        return m.group(1) + tables[name] + '\n' + m.group(4)
    return MARKER.sub(replace, text)
