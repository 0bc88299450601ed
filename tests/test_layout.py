"""The layers stay one-directional: the package never imports tools/ and its modules import
each other without a loop, a tool never imports another tool or edits sys.path, and a test module
never imports another test module (shared helpers live in tests/conftest.py)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

from tests.conftest import REPO


def imported_modules(path: Path):
    """(line, module) of every import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module


def python_files(folder: str):
    return sorted((REPO / folder).rglob('*.py'))


TOOL_NAMES = {path.stem for path in python_files('tools')} | {'tools'}


def test_the_package_does_not_import_tools():
    found = [f'{path.relative_to(REPO)}:{line} imports {module}' for path in python_files('fdrop_mm')
             for line, module in imported_modules(path) if module.split('.')[0] == 'tools']
    assert not found


@pytest.mark.parametrize('path', python_files('tools'), ids=lambda p: str(p.relative_to(REPO)))
def test_a_tool_is_thin(path):
    found = [f'line {line} imports {module}' for line, module in imported_modules(path)
             if module.split('.')[0] in TOOL_NAMES]
    assert not found, f'{path.relative_to(REPO)} imports another tool'
    assert 'sys.path' not in path.read_text(), f'{path.relative_to(REPO)} edits sys.path'


def test_no_test_module_imports_another():
    found = [f'{path.relative_to(REPO)}:{line} imports {module}' for path in python_files('tests')
             for line, module in imported_modules(path)
             if module.split('.')[-1].startswith('test_') or module.startswith('tests.test_')]
    assert not found, 'shared helpers belong in tests/conftest.py'


def module_name(path: Path) -> str:
    """``fdrop_mm/experiments/stages.py`` -> ``fdrop_mm.experiments.stages`` (a package: its ``__init__``'s folder)."""
    parts = path.relative_to(REPO).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_imports(root: str = 'fdrop_mm') -> Dict[str, Set[str]]:
    """Each module of the package -> the package's modules it imports anywhere in its text (a
    relative import resolved against its package; ``from pkg import name`` is ``pkg.name`` where
    that is a module, else ``pkg``)."""
    modules = {module_name(path): path for path in python_files(root)}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split('.')[:len(package.split('.')) - node.level + 1] if node.level else []
                source = '.'.join([*base, *([node.module] if node.module else [])])
                found.update(f'{source}.{alias.name}' if f'{source}.{alias.name}' in modules else source
                             for alias in node.names)
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def import_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """A loop of imports in ``graph`` (its modules in order, the first repeated last), [] if none."""
    state: Dict[str, str] = {}  # 'open' while its imports are followed, then 'done'
    path: List[str] = []

    def visit(module):
        state[module], path[len(path):] = 'open', [module]
        for imported in sorted(graph[module]):
            if state.get(imported) == 'open':
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        state[module] = 'done'
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


def test_import_cycles_are_found():
    assert import_cycle(dict(a={'b'}, b={'c'}, c={'a'}, d={'a'})) == ['a', 'b', 'c', 'a']
    assert import_cycle(dict(a={'b', 'c'}, b={'c'}, c=set())) == []


def test_the_package_has_no_import_loop():
    graph = package_imports()
    assert graph['fdrop_mm.experiments.pipeline'] >= {'fdrop_mm.experiments.stages',
                                                      'fdrop_mm.experiments.launcher'}, 'relative imports resolved'
    cycle = import_cycle(graph)
    assert not cycle, 'an import loop: ' + ' -> '.join(cycle)
