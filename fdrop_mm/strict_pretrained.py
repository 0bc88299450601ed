"""``init_cfg=dict(type='StrictPretrained', checkpoint=..., prefix='backbone.')``, in mmengine's
root ``WEIGHT_INITIALIZERS``: loads like mmengine's ``Pretrained`` but raises on any missing,
unexpected or mis-shaped key instead of logging a warning and leaving weights random."""
from typing import Any, Optional

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from .checkpoint_files import key_mismatches, load_checkpoint_file, state_dict_of, strip_prefix

PREFIX = 'backbone.'  # what fdrop_mm.transfer.extract_backbone writes


def _is_strict_cfg(cfg: Any) -> bool:
    return isinstance(cfg, dict) and cfg.get('type') in ('StrictPretrained', StrictPretrainedInit)


@WEIGHT_INITIALIZERS.register_module(name='StrictPretrained')
class StrictPretrainedInit:
    """``init_cfg=dict(type='StrictPretrained', checkpoint=..., prefix='backbone.')``.

    Like mmengine's ``Pretrained`` but strict: every parameter and buffer of the
    module (``num_batches_tracked`` included) must be in the checkpoint under
    ``prefix`` with its shape, and nothing else may be there; otherwise a
    ``RuntimeError`` names the checkpoint, the prefix and the keys. Modules
    without state (FocusedDropout plugins) need nothing. ``prefix=None`` or
    ``''`` takes the whole state_dict.

    mmengine's ``BaseModule.init_weights`` defers only ``type='Pretrained'``
    until after the children's ``init_weights``; any other type runs first, so
    a child's own init (e.g. mmcv DCN zeroing its offsets) would overwrite the
    load. This initializer therefore runs the children's ``init_weights``
    itself, then loads, then marks the module and its children initialised:
    the same order and random draws as ``Pretrained``. It must be the module's
    only ``init_cfg`` entry.
    """

    def __init__(self, checkpoint, prefix: Optional[str] = PREFIX, map_location='cpu'):
        self.checkpoint = str(checkpoint)
        self.prefix = prefix or ''
        if self.prefix and not self.prefix.endswith('.'):
            self.prefix += '.'
        self.map_location = map_location

    def _fail(self, module: nn.Module, detail: str) -> RuntimeError:
        return RuntimeError(f'StrictPretrained: checkpoint {self.checkpoint} under prefix {self.prefix!r} '
                            f'does not match {type(module).__name__}: {detail}')

    def __call__(self, module: nn.Module) -> None:
        own = module.init_cfg if isinstance(getattr(module, 'init_cfg', None), list) else []
        others = [c for c in own if not _is_strict_cfg(c)]
        if any(_is_strict_cfg(c) for c in own) and others:
            raise ValueError(f'{type(module).__name__}.init_cfg: StrictPretrained sets every parameter '
                             f'and buffer; drop the other entries {others}')
        state = strip_prefix(state_dict_of(load_checkpoint_file(self.checkpoint, self.map_location),
                                           self.checkpoint), self.prefix)
        expected = module.state_dict()
        problems = key_mismatches(expected, state)
        if problems:  # checked before any init runs: fail fast, leave the module as built
            raise self._fail(module, '; '.join(problems) + ('' if state else '; no key starts with the prefix'))

        tracking = hasattr(module, '_params_init_info')
        for child in module.children():  # what BaseModule.init_weights would do before Pretrained
            if is_model_wrapper(child) and not hasattr(child, 'init_weights'):
                child = child.module
            if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
                child.init_weights()
                if tracking:
                    update_init_info(child, init_info=f'Initialized by user-defined `init_weights` '
                                                      f'in {type(child).__name__} ')
                child.is_init = True  # BaseModule sets it itself; plain modules need it to be skipped
        print_log(f'load {self.prefix or "all keys"} in {type(module).__name__} from {self.checkpoint} '
                  f'(strict)', logger='current')
        module.load_state_dict(state, strict=True)
        module.is_init = True  # also when reached through a parent's override: no later re-init
        if tracking:
            update_init_info(module, init_info=f'StrictPretrainedInit: load from {self.checkpoint}')
