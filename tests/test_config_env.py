"""The environment variables of the shipped configs: each one mmengine reports as used is used.

mmengine substitutes ``{{$NAME:default}}`` file by file and logs "Using env variable `NAME` with
value of ... to replace item in config." for each file that names it; a child config that then
overrides the value with another variable's would make that line a lie.
"""
import re

import pytest
from mmengine.config import Config

from tests.conftest import REPO

CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)
VARIABLE = re.compile(r'\{\{\$(\w+):')


def shipped_variables():
    texts = [path.read_text() for path in (REPO / 'configs').rglob('*.py')]
    return sorted({name for text in texts for name in VARIABLE.findall(text)})


def data_roots(node):
    """Every ``data_root`` value inside ``node`` (nested dicts and lists)."""
    if isinstance(node, dict):
        own = [node['data_root']] if 'data_root' in node else []
        return own + [root for value in node.values() for root in data_roots(value)]
    if isinstance(node, (list, tuple)):
        return [root for value in node for root in data_roots(value)]
    return []


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: str(p.relative_to(REPO / 'configs')))
def test_every_reported_variable_is_used(config, monkeypatch):
    for name in shipped_variables():
        monkeypatch.setenv(name, f'/env/{name}')
    cfg = Config.fromfile(str(config))
    used = {key: cfg[key] for key in ('model', 'train_dataloader', 'val_dataloader', 'test_dataloader')
            if key in cfg}
    for name, value in cfg.env_variables.items():
        assert value in str(used), f'{config}: ${name} is reported as used, but nothing reads {value}'
    roots = data_roots(used)
    assert roots and all(root.startswith('/env/') for root in roots), f'{config}: data roots {roots}'
