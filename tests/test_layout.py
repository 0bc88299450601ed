"""The layers stay one-directional (#12): the package never imports tools/, a tool never
imports another tool or edits sys.path, and a test module never imports another test module
(shared helpers live in tests/conftest.py)."""
import ast
from pathlib import Path

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
