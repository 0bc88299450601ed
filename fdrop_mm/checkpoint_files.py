"""Checkpoint files read and checked against a model: a local path or an mmengine URL scheme
loaded as a dict, an unreadable file named (``fdrop_mm.compat.checkpoint_loading``), and the keys
that do not fit a model listed.

:func:`check_checkpoint_fits` refuses a whole model's checkpoint (``tools/test.py``'s
CHECKPOINT, ``tools/train.py``'s ``load_from``) that does not fit, which mmengine's Runner would
load non-strictly (docs/checkpoints.md).
"""
import logging
import os.path as osp
import re
from typing import Any, Dict, List, Mapping, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from .compat.checkpoint_loading import naming_the_file

SHOWN_KEYS = 10
# Runner.load_checkpoint's default revise_keys, which load_from and tools/test.py go through
RUNNER_REVISE_KEYS = ((r'^module.', ''), )


def is_local(path: str) -> bool:
    """Whether ``path`` is a local file rather than a URL."""
    return '://' not in str(path)  # mmengine schemes: http(s)://, open-mmlab://, torchvision://, s3://, ...


def load_checkpoint_file(path, map_location='cpu') -> dict:
    """Load a checkpoint (local path or an mmengine URL scheme) as a dict.

    Raises ``FileNotFoundError`` for a missing local file and ``ValueError``
    naming the path for anything unreadable (corrupt, truncated, refused by
    weights-only loading, not a dict).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    path = str(path)
    if is_local(path) and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    with naming_the_file(path, ValueError):
        ckpt = CheckpointLoader.load_checkpoint(path, map_location=map_location, logger='current')
    if not isinstance(ckpt, dict):
        raise ValueError(f'checkpoint {path} holds a {type(ckpt).__name__}, not a dict')
    return ckpt


def state_dict_of(ckpt: dict, path: str) -> Dict[str, Any]:
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'checkpoint {path} has no state_dict of tensors '
                         f'(top-level keys: {sorted(map(str, ckpt))[:SHOWN_KEYS]})')
    return dict(state)


def strip_prefix(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def key_list(label: str, keys: List[str]) -> str:
    more = f' (+{len(keys) - SHOWN_KEYS} more)' if len(keys) > SHOWN_KEYS else ''
    return f'{len(keys)} {label}: {keys[:SHOWN_KEYS]}{more}'


def key_mismatches(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> List[str]:
    """Missing / unexpected / shape-mismatched keys as message parts; [] when they match."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = []
    for k, ref in expected.items():
        if k not in found:
            continue
        v = found[k]
        if not isinstance(v, torch.Tensor):
            shapes.append(f'{k}: {type(v).__name__}, not a tensor')
        elif v.shape != ref.shape:
            shapes.append(f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(ref.shape)}')
    return [key_list(label, keys) for label, keys in
            (('missing', missing), ('unexpected', unexpected), ('shape mismatches', shapes)) if keys]


def top_prefixes(state: Mapping[str, Any]) -> List[str]:
    return sorted({k.split('.', 1)[0] + '.' for k in state})


def checkpoint_mismatches(model: nn.Module, checkpoint, loaded: Optional[dict] = None) -> List[str]:
    """How ``checkpoint``'s state_dict differs from ``model``'s, with the keys revised as mmengine's
    ``Runner.load_checkpoint`` revises them (``module.`` stripped): the missing / unexpected /
    mis-shaped keys as message parts, [] when it fits. ``loaded``: the file's content where the
    caller has read it already."""
    checkpoint = str(checkpoint)
    state = state_dict_of(load_checkpoint_file(checkpoint) if loaded is None else loaded, checkpoint)
    for pattern, replacement in RUNNER_REVISE_KEYS:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return key_mismatches(model.state_dict(), state)


def check_checkpoint_fits(model: nn.Module, checkpoint, allow_partial: bool = False) -> None:
    """Refuse a checkpoint that does not fit ``model`` before mmengine loads it non-strictly.

    ``model`` is e.g. ``runner.model``; a model wrapper (DDP) is unwrapped, as the Runner does.
    Raises ``ValueError`` naming the file and the model and listing the missing, unexpected
    and mis-shaped keys (see :func:`checkpoint_mismatches`). With ``allow_partial`` (a
    deliberate partial load, ``--allow-partial-load``) logs the same lists as a warning instead;
    mmengine then loads the matching keys only.
    """
    if is_model_wrapper(model):
        model = model.module
    problems = checkpoint_mismatches(model, checkpoint)
    if not problems:
        return
    detail = f'checkpoint {checkpoint} does not fit the {type(model).__name__}: ' + '; '.join(problems)
    if not allow_partial:
        raise ValueError(f'{detail}. For a deliberate partial load (only the matching keys), '
                         'pass --allow-partial-load')
    print_log(f'{detail}. --allow-partial-load: loading only the matching keys', logger='current',
              level=logging.WARNING)
