"""fdrop_mm.cli in the tools, run as a user runs them: the known upstream ``pkg_resources``
deprecation warning is hidden and any other warning still prints; a bad input ends the tool with
its message and exit status 2."""
from tests.conftest import REPO, run_tool

KNOWN = 'pkg_resources is deprecated'


def test_only_the_known_upstream_warning_is_hidden(tmp_path):
    """The config's ``mmpretrain::`` base makes mmengine reload pkg_resources (the known warning);
    the config itself warns too, and its default_scope is a bad input."""
    config = tmp_path / 'warns.py'
    config.write_text(f"_base_ = ['{REPO / 'configs/tiny/resnet50_tiny-imagenet.py'}']\n"
                      "default_scope = 'nowhere'\n"
                      "__import__('warnings').warn('a warning of the config, not the known one')\n")
    proc = run_tool('analysis_tools/ref_channel_stats.py', config, config, '--out-dir', tmp_path / 'out')
    assert 'UserWarning: a warning of the config, not the known one' in proc.stderr, proc.stderr[-3000:]
    assert KNOWN not in proc.stderr
    assert proc.returncode == 2
    assert f"ref_channel_stats.py: error: {config}: default_scope must be one of" in proc.stderr
    assert not (tmp_path / 'out').exists()
