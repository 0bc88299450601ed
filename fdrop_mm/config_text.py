"""Top-level literals of an mmengine config text, read without executing it: a checkpoint's
``meta['cfg']`` would run whatever Python it carries under ``Config.fromstring``."""
import ast
from typing import Any, Dict, Tuple


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError(f'line {node.lineno}: ** in a dict literal')
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict'
            and not node.args and all(kw.arg is not None for kw in node.keywords)):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float, complex)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name):  # lazy-import configs write type=FocusedDropoutHook
        return node.id
    if isinstance(node, ast.Attribute):
        return f'{_literal(node.value)}.{node.attr}'
    raise ValueError(f'line {getattr(node, "lineno", "?")}: {type(node).__name__} is not a literal')


def parse_config_text(text: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Top-level ``name = literal`` assignments of an mmengine config text, without executing it.

    Returns ``(values, skipped)``: ``skipped`` maps each assignment that is not
    a literal (``dict(...)``, lists, tuples, constants; names read as strings)
    to the reason. Imports and other statements are ignored.
    """
    values, skipped = {}, {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                values[name] = _literal(node.value)
            except ValueError as e:
                skipped[name] = str(e)
    return values, skipped
