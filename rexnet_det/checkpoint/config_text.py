"""Config text stored inside checkpoints: never turned into a Config.

mmengine saves the run's config as Python text in ``meta['cfg']`` and
``message_hub['runtime_info']['cfg']``, and turns such text back into a
``Config`` with ``Config.fromstring(text, '.py')``, which executes it and
imports its ``custom_imports``: ``Runner.resume`` and
``FlexibleRunner.resume`` with ``meta['config']`` (an mmcv 1.x key that
mmengine never writes), ``BaseInferencer`` and so mmdet's
``DetInferencer(model=None, weights=...)`` with either ``cfg``. A checkpoint
is data from wherever it was downloaded, so that text is someone else's
code. Even text that is plain data is not safe to build from: a config's
``type='os.system'`` reaches mmengine's ``Registry.get``, whose fallback
imports any dotted name and calls it.

So :func:`defuse_config_texts`, run on every checkpoint mmengine loads (see
:mod:`rexnet_det.integration`), removes each of :data:`CONFIG_TEXT_FIELDS`
from the loaded dict (the file is not changed) and returns one log line
that names the file: at INFO for text that is plain ``NAME = literal``
data (what mmengine writes), at WARNING with the reason for anything else
(:func:`read_config_text` reads it without evaluating anything). Resume
loses nothing: mmengine only reads the GPU count from ``meta['config']``,
which its own checkpoints never hold.
"""
import ast
import logging
from typing import Any, Dict, Optional, Tuple

# (path of keys) of every config text mmengine 0.10 / mmdet 3.3 read back
CONFIG_TEXT_FIELDS: Tuple[Tuple[str, ...], ...] = (
    ('meta', 'config'),  # Runner.resume, FlexibleRunner.resume
    ('meta', 'cfg'),  # BaseInferencer fallback; written by save_checkpoint
    ('message_hub', 'runtime_info', 'cfg'),  # BaseInferencer, DetInferencer
)
MAX_TEXT_CHARS = 4 << 20  # a real config dump is a few KiB
MAX_DEPTH = 64
# keys mmengine's Config acts on rather than stores
_REFUSED_KEYS = ('_base_', 'filename', 'text', 'pretty_text',
                 'env_variables')
_SCALARS = (str, int, float, bool, type(None))


class ConfigTextError(ValueError):
    """Config text that is not plain ``NAME = literal`` data."""


def _literal(node: ast.AST, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ConfigTextError(f'nested deeper than {MAX_DEPTH} levels')
    where = f'line {getattr(node, "lineno", "?")}'
    if isinstance(node, ast.Constant) and type(node.value) in _SCALARS:
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op,
                                                     (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, depth + 1) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ConfigTextError(f'{where}: `**` unpacking is code')
        keys = [_literal(k, depth + 1) for k in node.keys]
        if not all(type(k) in _SCALARS for k in keys):
            raise ConfigTextError(f'{where}: a dict key is not a scalar')
        return dict(zip(keys, (_literal(v, depth + 1) for v in node.values)))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _literal(k.value, depth + 1) for k in node.keywords}
    raise ConfigTextError(f'{where}: `ast.{type(node).__name__}` is not a '
                          'literal')


def read_config_text(text: str) -> Dict[str, Any]:
    """Read config text as data, evaluating nothing.

    Args:
        text (str): Python config text, as ``Config.pretty_text`` writes it.

    Returns:
        dict: Top-level name -> value, in order.

    Raises:
        ConfigTextError: The text holds anything but ``NAME = literal``
            statements (an import, a call other than ``dict(k=v)``, a
            name, an operator, ``_base_``...), or is too large or deep.
    """
    if not isinstance(text, str):
        raise ConfigTextError(f'a {type(text).__name__}, not text')
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigTextError(f'{len(text)} characters, more than '
                              f'{MAX_TEXT_CHARS}')
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ConfigTextError(f'not Python ({type(exc).__name__})') from None
    data: Dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ConfigTextError(f'line {node.lineno}: an '
                                  f'`ast.{type(node).__name__}` statement, '
                                  'not `NAME = literal`')
        name = node.targets[0].id
        if name in _REFUSED_KEYS:
            raise ConfigTextError(f'line {node.lineno}: `{name}` is not '
                                  'data to mmengine')
        data[name] = _literal(node.value, 0)
    return data


def defuse_config_texts(checkpoint: Any,
                        source: str) -> Optional[Tuple[int, str]]:
    """Remove every config text from a loaded checkpoint, in place.

    Args:
        checkpoint: What the loader returned (only dicts holding
            :data:`CONFIG_TEXT_FIELDS` are changed).
        source (str): The file's name, for the log line.

    Returns:
        (level, line) to log, naming `source` and the fields removed; None
        when there were none. The level is WARNING when a text was not
        plain data (the line says why), INFO otherwise.
    """
    removed, problems = [], []
    for path in CONFIG_TEXT_FIELDS:
        parent = checkpoint
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        where = '.'.join(path)
        removed.append(where)
        try:
            read_config_text(parent.pop(path[-1]))
        except ConfigTextError as exc:
            problems.append(f'{where}: {exc}')
    if not removed:
        return None
    line = (f'{source}: not using the config text in {", ".join(removed)}: '
            'a checkpoint\'s config is never built or run (give the config '
            'file, e.g. DetInferencer(model=CONFIG, weights=...))')
    if problems:
        return logging.WARNING, (line + '; it is not plain data, so it may '
                                 'be an attack (' + '; '.join(problems) + ')')
    return logging.INFO, line
