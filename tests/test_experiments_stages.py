"""fdrop_mm.experiments.stages: the hash of what a run trains, from mmengine's resolved config."""
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
