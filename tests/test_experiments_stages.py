"""fdrop_mm.experiments.stages: the hash of what a run trains, from mmengine's resolved config."""
import logging
import os
from unittest import mock

from mmengine.config import Config
from mmengine.logging import MMLogger

from fdrop_mm.experiments.stages import config_sha256, parse_cfg_options


def test_config_hash_follows_inheritance_options_and_environment(tmp_path):
    base, child = tmp_path / 'base.py', tmp_path / 'child.py'
    base.write_text("data_root = '{{$TINY_ROOT:data/x}}'\nmodel = dict(depth=20)\n")
    child.write_text("_base_ = './base.py'\nmodel = dict(width=8)\n")
    digest = config_sha256(child)
    assert config_sha256(child) == digest
    assert config_sha256(child, ['model.depth=56']) != digest
    assert config_sha256(child, ['model.depth=20']) == digest  # what is trained, not how it is said
    assert config_sha256(child, env=dict(TINY_ROOT='elsewhere')) != digest
    base.write_text("data_root = '{{$TINY_ROOT:data/x}}'\nmodel = dict(depth=110)\n")
    assert config_sha256(child) != digest, 'an inherited file changed'


def test_options_are_read_as_train_py_reads_them():
    assert parse_cfg_options(['a.b=None', 'c=[1]', 'd=0.5', 'e=False']) == dict(
        {'a.b': None, 'c': [1], 'd': 0.5, 'e': False})
    assert parse_cfg_options([]) == {}


def test_hashing_a_config_logs_no_env_variable_lines(tmp_path):
    """The driver hashes each stage's config several times; mmengine's "Using env variable"
    line belongs in the stage's own log, not once per hash in the driver's output."""
    config = tmp_path / 'config.py'
    config.write_text("data_root = '{{$TINY_ROOT:data/x}}'\n")
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        config_sha256(config, env=dict(TINY_ROOT='elsewhere'))
        assert not [r.getMessage() for r in records]
        with mock.patch.dict(os.environ, dict(TINY_ROOT='elsewhere')):
            Config.fromfile(config)  # mmengine logs the substitution: quieted only while hashing
        assert any('Using env variable `TINY_ROOT`' in r.getMessage() for r in records)
    finally:
        logger.removeHandler(handler)
