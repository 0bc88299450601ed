"""mmaction2 1.2.0 as the package registry ships it: ``import mmaction.models`` without DRN's files.

``mmaction/models/localizers/__init__.py`` imports ``.drn.drn``, but the folder
``mmaction/models/localizers/drn`` is missing from the registry's mmaction2 1.2.0 wheel and sdist
(https://github.com/open-mmlab/mmaction2/issues/2714), so ``import mmaction.models`` raises
``ModuleNotFoundError`` and so does every mmaction2 Runner (the ``mmaction`` default scope imports
``mmaction.models`` when it builds a model).

``supply_missing_drn()`` appends an import finder to the end of ``sys.meta_path``. Python asks it
only after every other finder has failed, so an installation that has the folder (mmaction2 from
its git source, or a later release) imports its own files and never sees it. Where the folder is
missing it supplies the two modules the localizers import, ``mmaction.models.localizers.drn`` and
``.drn.drn``; the second registers ``DRN`` in mmaction2's ``MODELS`` under the upstream name, and
building it raises an error that names the upstream issue. Nothing of upstream's DRN is copied;
every other mmaction2 model is untouched. Installing the finder imports nothing of mmaction2.
"""
import importlib.abc
import importlib.machinery
import sys

DRN_PACKAGE = 'mmaction.models.localizers.drn'
DRN_MODULE = f'{DRN_PACKAGE}.drn'
UPSTREAM_ISSUE = 'https://github.com/open-mmlab/mmaction2/issues/2714'


class DRN:
    """Registered as mmaction2's ``DRN`` where its files are missing; cannot be built."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f'DRN cannot be built: this mmaction2 installation lacks mmaction/models/localizers/drn '
            f'(the package registry\'s mmaction2 1.2.0 wheel and sdist do not ship it, {UPSTREAM_ISSUE}); '
            f'install mmaction2 from its git source to use DRN')


class MissingDRNLoader(importlib.abc.Loader):
    """Executes the stand-ins: an empty package ``drn`` and ``drn.drn`` registering ``DRN``."""

    def exec_module(self, module):
        if module.__name__ == DRN_MODULE:
            from mmaction.registry import MODELS
            MODELS.register_module(module=DRN)
            module.DRN = DRN
            module.__all__ = ['DRN']


class MissingDRNFinder(importlib.abc.MetaPathFinder):
    """Finds the two DRN modules, last of all finders (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in (DRN_PACKAGE, DRN_MODULE):
            return None
        return importlib.machinery.ModuleSpec(fullname, MissingDRNLoader(), is_package=fullname == DRN_PACKAGE)


def supply_missing_drn() -> None:
    """Append the finder to ``sys.meta_path`` once per process."""
    if not any(isinstance(finder, MissingDRNFinder) for finder in sys.meta_path):
        sys.meta_path.append(MissingDRNFinder())
