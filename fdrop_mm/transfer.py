"""mmpretrain ResNet checkpoint -> mmdet ResNet backbone, checked at both ends.

- :func:`extract_backbone` keeps the ``backbone.`` tensors of an mmpretrain
  ``ImageClassifier`` checkpoint, verifies them against a freshly built mmdet
  ``ResNet(depth=...)`` (every parameter and buffer, same shapes, nothing extra)
  and writes ``{'state_dict': {'backbone.<k>': tensor}, 'meta': {...}}``.
- ``init_cfg=dict(type='StrictPretrained', checkpoint=..., prefix='backbone.')``
  (:class:`StrictPretrainedInit`, in mmengine's root ``WEIGHT_INITIALIZERS``)
  loads like mmengine's ``Pretrained`` but raises on any missing, unexpected or
  mis-shaped key instead of logging a warning and leaving weights random.
- :func:`check_checkpoint_fits` does the same for a whole model's checkpoint
  (``tools/test.py``'s CHECKPOINT, ``tools/train.py``'s ``load_from``), which
  mmengine's Runner loads non-strictly.

What trained the source is read from its ``meta['cfg']`` text (``model.type``) with a
literal-only parser (:func:`parse_config_text`), never executed: ``Config.fromstring``
would run whatever Python the checkpoint carries. Its FocusedDropout settings are data:
``meta['focused_dropout']``, which ``FocusedDropoutHook`` writes into every checkpoint.
"""
import ast
import logging
import os
import os.path as osp
import re
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn


__all__ = ['extract_backbone', 'load_checkpoint_file', 'parse_config_text',
           'source_model', 'checkpoint_mismatches',
           'check_checkpoint_fits', 'StrictPretrainedInit']

PREFIX = 'backbone.'
SHOWN_KEYS = 10
# meta fields copied from the source checkpoint's own meta (mmengine Runner.save_checkpoint)
SOURCE_META_KEYS = ('experiment_name', 'epoch', 'iter', 'seed', 'time', 'mmengine_version')
RESERVED_META_KEYS = ('source', 'source_meta', 'source_model', 'backbone', 'num_tensors',
                      'focused_dropout', 'focused_dropout_history', 'focused_dropout_note')
CLASSIFIER_TYPE = 'ImageClassifier'
DETECTOR_HEAD_PREFIXES = ('bbox_head.', 'rpn_head.', 'roi_head.')
# Runner.load_checkpoint's default revise_keys, which load_from and tools/test.py go through
RUNNER_REVISE_KEYS = ((r'^module.', ''), )

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

# checkpoint files ----------------------------------------------------------
def _is_local(path: str) -> bool:
    return '://' not in path  # mmengine schemes: http(s)://, open-mmlab://, torchvision://, s3://, ...


def load_checkpoint_file(path, map_location='cpu') -> dict:
    """Load a checkpoint (local path or an mmengine URL scheme) as a dict.

    Raises ``FileNotFoundError`` for a missing local file and ``ValueError``
    naming the path for anything unreadable (corrupt, truncated, refused by
    weights-only loading, not a dict).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    path = str(path)
    if _is_local(path) and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location=map_location, logger='current')
    except FileNotFoundError:
        raise
    except Exception as e:  # torch/pickle/zipfile raise many types for a damaged file
        raise ValueError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e
    if not isinstance(ckpt, dict):
        raise ValueError(f'checkpoint {path} holds a {type(ckpt).__name__}, not a dict')
    return ckpt


def _state_dict(ckpt: dict, path: str) -> Dict[str, Any]:
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'checkpoint {path} has no state_dict of tensors '
                         f'(top-level keys: {sorted(map(str, ckpt))[:SHOWN_KEYS]})')
    return dict(state)


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _key_list(label: str, keys: List[str]) -> str:
    more = f' (+{len(keys) - SHOWN_KEYS} more)' if len(keys) > SHOWN_KEYS else ''
    return f'{len(keys)} {label}: {keys[:SHOWN_KEYS]}{more}'


def _mismatches(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> List[str]:
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
    return [_key_list(label, keys) for label, keys in
            (('missing', missing), ('unexpected', unexpected), ('shape mismatches', shapes)) if keys]


def _top_prefixes(state: Mapping[str, Any]) -> List[str]:
    return sorted({k.split('.', 1)[0] + '.' for k in state})


def checkpoint_mismatches(model: nn.Module, checkpoint) -> List[str]:
    """How ``checkpoint``'s state_dict differs from ``model``'s, with the keys revised as mmengine's
    ``Runner.load_checkpoint`` revises them (``module.`` stripped): the missing / unexpected /
    mis-shaped keys as message parts, [] when it fits."""
    checkpoint = str(checkpoint)
    state = _state_dict(load_checkpoint_file(checkpoint), checkpoint)
    for pattern, replacement in RUNNER_REVISE_KEYS:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return _mismatches(model.state_dict(), state)


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


def reference_backbone(depth: int = 50) -> nn.Module:
    """mmdet ``ResNet(depth=depth)`` on the meta device (shapes only, no memory)."""
    from mmdet.registry import MODELS
    with torch.device('meta'):  # _scope_: inside an mmpretrain default scope 'ResNet' is mmpretrain's
        return MODELS.build(dict(type='ResNet', depth=depth, _scope_='mmdet'))


# config text ---------------------------------------------------------------
def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError(f'line {node.lineno}: ** in a dict literal')
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict'
            and not node.args and all(kw.arg is not None for kw in node.keywords)):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float, complex)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name):  # lazy-import configs write type=FocusedDropoutHook
        return node.id
    if isinstance(node, ast.Attribute):
        return f'{_literal(node.value)}.{node.attr}'
    raise ValueError(f'line {getattr(node, "lineno", "?")}: {type(node).__name__} is not a literal')


def parse_config_text(text: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Top-level ``name = literal`` assignments of an mmengine config text, without executing it.

    Returns ``(values, skipped)``: ``skipped`` maps each assignment that is not
    a literal (``dict(...)``, lists, tuples, constants; names read as strings)
    to the reason. Imports and other statements are ignored.
    """
    values, skipped = {}, {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                values[name] = _literal(node.value)
            except ValueError as e:
                skipped[name] = str(e)
    return values, skipped


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
    heads = [p for p in _top_prefixes(state) if p in DETECTOR_HEAD_PREFIXES]
    if heads:
        return dict(type='detector', known_from=f'state_dict keys {heads}')
    return dict(type=None, known_from='neither meta.cfg model.type nor detector head keys')


def _is_classifier(source: dict) -> bool:
    return source['type'] is None or source['type'].split('.')[-1] == CLASSIFIER_TYPE


# extraction ----------------------------------------------------------------
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
                     allow_non_classifier_source: bool = False) -> dict:
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
    and the caller's ``meta`` entries at top level.

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
    if _is_local(src) and osp.exists(dst) and osp.samefile(src, dst):
        raise ValueError(f'dst {dst} is the source checkpoint itself')

    ckpt = load_checkpoint_file(src)
    state = _state_dict(ckpt, src)
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
    backbone = _strip_prefix(state, PREFIX)
    expected = reference_backbone(depth).state_dict()
    problems = _mismatches(expected, backbone)
    if problems:
        hint = '' if backbone else f'; it has no {PREFIX!r} keys at all, only {_top_prefixes(state)}'
        raise ValueError(f'checkpoint {src}: {PREFIX}* does not match mmdet ResNet(depth={depth}): '
                         + '; '.join(problems) + hint)
    nonfinite = [k for k, v in backbone.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise ValueError(f'checkpoint {src}: ' + _key_list('tensors with NaN/inf', nonfinite))

    src_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    fd = src_meta.get('focused_dropout')  # FocusedDropoutHook.before_save_checkpoint wrote it
    history = _plain(src_meta.get('focused_dropout_history') or [])
    note = focused_dropout_note(fd, history)
    record = dict(
        source=osp.abspath(src) if _is_local(src) else src,
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


# strict pretrained init ----------------------------------------------------
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
        state = _strip_prefix(_state_dict(load_checkpoint_file(self.checkpoint, self.map_location),
                                          self.checkpoint), self.prefix)
        expected = module.state_dict()
        problems = _mismatches(expected, state)
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
