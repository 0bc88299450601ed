"""The registry's mmaction2 1.2.0 (no ``mmaction/models/localizers/drn``) imports its models once
fdrop_mm is imported; its recognizers build, DRN fails naming the upstream issue, and an
installation that has DRN's files keeps its own."""
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

import fdrop_mm  # noqa: F401  supplies the missing DRN modules
from fdrop_mm.compat.mmaction_drn import UPSTREAM_ISSUE

INSTALLED_MMACTION = Path(find_spec('mmaction').submodule_search_locations[0])


def run_python(code: str, *path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, ``path`` first on its sys.path."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(str(p) for p in path)} if path else None
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_installed_mmaction_lacks_drn():
    """The premise: the pinned mmaction2 is the registry's, without DRN's folder."""
    assert (INSTALLED_MMACTION / 'models/localizers/__init__.py').read_text().count('from .drn.drn import DRN')
    assert not (INSTALLED_MMACTION / 'models/localizers/drn').exists()


def test_import_fdrop_mm_makes_mmaction_models_importable_without_importing_mmaction():
    out = run_python(
        'import sys\n'
        'import fdrop_mm\n'
        'print("mmaction" in sys.modules)\n'
        'import mmaction.models\n'
        'from mmaction.registry import MODELS\n'
        'print(MODELS.get("DRN").__module__, sorted({"Recognizer2D", "Recognizer3D", "ResNet3d", "TSNHead", "I3DHead", '
        '"ResNet3dSlowOnly", "BMN", "TCANet"} - set(MODELS.module_dict)))\n').stdout.split('\n')
    assert out[0] == 'False'  # import fdrop_mm stays cheap: mmaction2 is imported by its user
    assert out[1] == 'fdrop_mm.compat.mmaction_drn []'


def stock_model(config: str) -> dict:
    model = get_config(config).model
    model.backbone.pretrained = None  # no download
    return model


@pytest.mark.parametrize('config, clip, classes', [
    # TSN: 3 segments of one 32x32 frame each, frames as the batch of a 2-D ResNet-50
    ('mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py',
     (1, 3, 3, 32, 32), 400),
    # I3D: one clip of 8 frames of 32x32, (N, views, C, T, H, W)
    ('mmaction::recognition/i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py',
     (1, 1, 3, 8, 32, 32), 400),
], ids=['tsn-r50', 'i3d-r50'])
def test_stock_recognizers_build_and_predict(config, clip, classes):
    init_default_scope('mmaction')
    from mmaction.registry import MODELS
    model = stock_model(config)
    if 'i3d' in config:
        model.backbone.pretrained2d = False
    recognizer = MODELS.build(model).eval()
    with torch.no_grad():
        scores = recognizer(torch.randn(clip), mode='tensor', stage='head')
    assert scores.shape[-1] == classes and torch.isfinite(scores).all()


def test_building_drn_names_the_upstream_issue():
    init_default_scope('mmaction')
    from mmaction.registry import MODELS
    model = get_config('mmaction::localization/drn/drn_2xb16-4096-10e_c3d-feature_first.py').model
    with pytest.raises(RuntimeError, match='lacks mmaction/models/localizers/drn') as error:
        MODELS.build(model)
    assert UPSTREAM_ISSUE in str(error.value)


DRN_OF_ITS_OWN = '''from mmaction.registry import MODELS


@MODELS.register_module()
class DRN:
    """This installation's own DRN."""
'''


def test_an_installation_with_drn_keeps_its_own(tmp_path):
    """A copy of the installed package with a ``localizers/drn`` folder of its own, first on the
    path: fdrop_mm supplies nothing, the copy's DRN is registered."""
    shutil.copytree(INSTALLED_MMACTION, tmp_path / 'mmaction', ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    drn = tmp_path / 'mmaction/models/localizers/drn'
    drn.mkdir()
    (drn / '__init__.py').write_text('')
    (drn / 'drn.py').write_text(DRN_OF_ITS_OWN)
    out = run_python(
        'import fdrop_mm, mmaction.models\n'
        'from mmaction.registry import MODELS\n'
        'import mmaction.models.localizers.drn.drn as drn\n'
        'print(mmaction.__file__, drn.__file__, MODELS.get("DRN") is drn.DRN, MODELS.get("DRN").__doc__)\n',
        tmp_path).stdout.split()
    assert out[:3] == [str(tmp_path / 'mmaction/__init__.py'), str(drn / 'drn.py'), 'True']
    assert ' '.join(out[3:]) == "This installation's own DRN."
