"""mmpretrain ResNet checkpoint -> mmdet ResNet backbone, checked at both ends.

:func:`extract_backbone` keeps the ``backbone.`` tensors of an mmpretrain ``ImageClassifier``
checkpoint, verifies them against a freshly built mmdet ``ResNet(depth=...)`` (every parameter
and buffer, same shapes, nothing extra) and writes ``{'state_dict': {'backbone.<k>': tensor},
'meta': {...}}``, which ``init_cfg=dict(type='StrictPretrained', ...)``
(``fdrop_mm.strict_pretrained``) loads.

What trained the source is read from its ``meta['cfg']`` text (``model.type``) with a
literal-only parser (``fdrop_mm.config_text``), never executed. Its FocusedDropout settings are
data: ``meta['focused_dropout']``, which ``FocusedDropoutHook`` writes into every checkpoint.
"""
import logging
import os
import os.path as osp
import tempfile
from typing import Any, List, Mapping, Optional

import torch
from mmengine.logging import print_log
from torch import nn

from .checkpoint_files import (is_local, key_list, key_mismatches, load_checkpoint_file, state_dict_of,
                               strip_prefix, top_prefixes)
from .config_text import parse_config_text
from .strict_pretrained import PREFIX

__all__ = ['extract_backbone', 'source_model', 'focused_dropout_note']

# meta fields copied from the source checkpoint's own meta (mmengine Runner.save_checkpoint)
SOURCE_META_KEYS = ('experiment_name', 'epoch', 'iter', 'seed', 'time', 'mmengine_version')
RESERVED_META_KEYS = ('source', 'source_meta', 'source_model', 'backbone', 'num_tensors',
                      'focused_dropout', 'focused_dropout_history', 'focused_dropout_note')
CLASSIFIER_TYPE = 'ImageClassifier'
DETECTOR_HEAD_PREFIXES = ('bbox_head.', 'rpn_head.', 'roi_head.')

NO_FOCUSED_DROPOUT_NOTE = ('the source checkpoint records no FocusedDropoutHook (meta.focused_dropout): '
                           'trained without it, or saved before fdrop_mm recorded it')


def focused_dropout_note(settings: Optional[dict], history: List[dict]) -> Optional[str]:
    """What ``meta['focused_dropout']`` (the settings of the run that saved the checkpoint) alone
    does not say: that no hook is recorded, or that a resume changed the settings (``history``:
    ``meta['focused_dropout_history']``, which settings ran from which iteration)."""
    if len(history) > 1:
        return 'trained with changing FocusedDropout settings (resumed): ' + '; '.join(
            f'from iteration {h["from_iter"]}: ' + (', '.join(f'{k}={v}' for k, v in h['settings'].items()
                                                          if k != 'type') if h['settings'] else
                                                 'without FocusedDropoutHook') for h in history)
    return NO_FOCUSED_DROPOUT_NOTE if settings is None else None


def reference_backbone(depth: int = 50) -> nn.Module:
    """mmdet ``ResNet(depth=depth)`` on the meta device (shapes only, no memory)."""
    from mmdet.registry import MODELS
    with torch.device('meta'):  # _scope_: inside an mmpretrain default scope 'ResNet' is mmpretrain's
        return MODELS.build(dict(type='ResNet', depth=depth, _scope_='mmdet'))


def source_model(ckpt: dict, state: Mapping[str, Any]) -> dict:
    """What trained a checkpoint: ``{'type': ..., 'known_from': ...}``.

    ``type`` is ``meta['cfg']``'s ``model.type`` (the text parsed, not executed), else
    ``'detector'`` when the state_dict has detector heads (``bbox_head.``, ``rpn_head.``,
    ``roi_head.``), else ``None`` (unknown).
    """
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    if isinstance(meta.get('cfg'), str):
        try:
            model = parse_config_text(meta['cfg'])[0].get('model')
        except SyntaxError:
            model = None
        if isinstance(model, dict) and isinstance(model.get('type'), str):
            return dict(type=model['type'], known_from='meta.cfg model.type')
    heads = [p for p in top_prefixes(state) if p in DETECTOR_HEAD_PREFIXES]
    if heads:
        return dict(type='detector', known_from=f'state_dict keys {heads}')
    return dict(type=None, known_from='neither meta.cfg model.type nor detector head keys')


def _is_classifier(source: dict) -> bool:
    return source['type'] is None or source['type'].split('.')[-1] == CLASSIFIER_TYPE


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars unwrapped and anything else non-plain as str."""
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:
        value = value.item()
    if _is_plain(value):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def extract_backbone(src, dst, *, depth: int = 50, meta: Optional[dict] = None,
                     allow_non_classifier_source: bool = False, loaded: Optional[dict] = None) -> dict:
    """Write the verified ``backbone.`` tensors of checkpoint ``src`` to ``dst``; return what was written.

    ``dst`` holds ``{'state_dict': {'backbone.<k>': tensor}, 'meta': meta}``
    (plain Python and tensors only: loadable by weights-only ``torch.load``,
    ``Pretrained`` and ``StrictPretrained``). ``meta`` records ``source`` (the
    path), ``source_meta`` (the source's experiment_name, epoch, iter, seed,
    time, mmengine_version where present), ``source_model`` (what trained it,
    see :func:`source_model`), ``backbone`` (what the tensors were verified
    against), ``num_tensors``, ``focused_dropout`` (the source's
    ``meta['focused_dropout']``, the settings of its FocusedDropoutHook and the modules it
    drove; ``None`` plus ``focused_dropout_note``
    when unknown), ``focused_dropout_history`` (which settings ran from which iteration, with
    a ``focused_dropout_note`` where a resume changed them, see :func:`focused_dropout_note`),
    and the caller's ``meta`` entries at top level. ``loaded``: ``src``'s content where the
    caller has read it already.

    A source trained as anything but an mmpretrain ImageClassifier (e.g. a
    fine-tuned detector, whose backbone is no longer the pretrained one) is
    refused unless ``allow_non_classifier_source``; then it is logged as a
    warning and recorded in ``source_model``. A source of unknown type is extracted.

    Raises ``FileNotFoundError`` (missing ``src``) or ``ValueError`` naming
    ``src`` (unreadable; not a classifier's; backbone keys not exactly those of
    mmdet ResNet-depth, listing the missing / unexpected / mis-shaped keys;
    non-finite tensors).
    """
    src, dst = str(src), str(dst)
    extra = dict(meta or {})
    clash = sorted(set(extra) & set(RESERVED_META_KEYS))
    if clash:
        raise ValueError(f'meta keys {clash} are reserved for what extract_backbone records')
    bad = sorted(str(k) for k, v in extra.items() if not isinstance(k, str) or not _is_plain(v))
    if bad:
        raise ValueError(f'meta entries {bad} must have str keys and plain values '
                         f'(str, int, float, bool, None, lists, tuples, dicts)')
    if is_local(src) and osp.exists(dst) and osp.samefile(src, dst):
        raise ValueError(f'dst {dst} is the source checkpoint itself')

    ckpt = load_checkpoint_file(src) if loaded is None else loaded
    state = state_dict_of(ckpt, src)
    source = source_model(ckpt, state)
    if not _is_classifier(source):
        detail = (f'checkpoint {src} was trained as a {source["type"]} (known from its '
                  f'{source["known_from"]}), not as an mmpretrain {CLASSIFIER_TYPE}: its {PREFIX}* '
                  'is that model\'s, not a classification pretraining\'s')
        if not allow_non_classifier_source:
            raise ValueError(f'{detail}. Pass allow_non_classifier_source=True '
                             '(tools/model_converters/extract_backbone.py --allow-non-classifier-source) to extract it '
                             'anyway; the meta then records the source model')
        print_log(f'{detail}; extracting it anyway (allow_non_classifier_source)', logger='current',
                  level=logging.WARNING)
    backbone = strip_prefix(state, PREFIX)
    expected = reference_backbone(depth).state_dict()
    problems = key_mismatches(expected, backbone)
    if problems:
        hint = '' if backbone else f'; it has no {PREFIX!r} keys at all, only {top_prefixes(state)}'
        raise ValueError(f'checkpoint {src}: {PREFIX}* does not match mmdet ResNet(depth={depth}): '
                         + '; '.join(problems) + hint)
    nonfinite = [k for k, v in backbone.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise ValueError(f'checkpoint {src}: ' + key_list('tensors with NaN/inf', nonfinite))

    src_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    fd = src_meta.get('focused_dropout')  # FocusedDropoutHook.before_save_checkpoint wrote it
    history = _plain(src_meta.get('focused_dropout_history') or [])
    note = focused_dropout_note(fd, history)
    record = dict(
        source=osp.abspath(src) if is_local(src) else src,
        source_meta={k: _plain(src_meta[k]) for k in SOURCE_META_KEYS if k in src_meta},
        source_model=source,
        backbone=dict(type='mmdet.ResNet', depth=depth),
        num_tensors=len(expected),
        focused_dropout=_plain(fd),
        focused_dropout_history=history)
    if note:
        record['focused_dropout_note'] = note
    record.update(extra)
    payload = dict(state_dict={PREFIX + k: backbone[k].detach().clone() for k in expected}, meta=record)

    out_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    fd_, tmp = tempfile.mkstemp(prefix='.' + osp.basename(dst), suffix='.tmp', dir=out_dir)
    os.close(fd_)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, dst)  # readers never see a half-written dst
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return payload
