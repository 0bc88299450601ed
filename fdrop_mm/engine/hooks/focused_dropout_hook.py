"""FocusedDropoutHook: which steps are focused (§4), the modules it drives, and the magnified
weight decay on those steps (§5.2). Reference, logs and refusals: docs/hook.md."""
import difflib
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ...focused_dropout import FocusedDropout, as_gamma_range

MODES = ('focused', 'opposite', 'weight_decay_only')
SEED_LIMIT = 2 ** 63  # numpy's SeedSequence takes non-negative integers; 63 bits fit any int64


def _module_overview(model: nn.Module, depth: int = 2) -> List[str]:
    """Module names up to ``depth`` levels, for error messages."""
    return [name for name, _ in model.named_modules() if name and name.count('.') < depth]


def _number(value, field: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f'{field} must be a number, got {value!r}')
    return float(value)


def _describe(output) -> str:
    if isinstance(output, torch.Tensor):
        return f'a {output.dim()}-D {output.dtype} tensor of shape {tuple(output.shape)}'
    if isinstance(output, (tuple, list)):
        return f'a {type(output).__name__} of {len(output)} ({", ".join(type(o).__name__ for o in output)})'
    return f'a {type(output).__name__}'


def _largest_weight_decay(param_groups) -> float:
    return max((group['weight_decay'] for group in param_groups), default=0.0)


def _in_backward() -> bool:
    """Whether autograd is running a backward on this thread: a forward there is a recomputation
    (activation checkpointing), not one of the iteration's forwards. Compiled code runs none."""
    return not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1


def _check_targets(targets, allow_nested: bool) -> Optional[List[str]]:
    if targets is None:
        return None
    if isinstance(targets, str):
        raise ValueError(f"targets must be a list of module names, got the string {targets!r}; write [{targets!r}]")
    if len(targets) == 0:
        raise ValueError('targets must name at least one module, or be None')
    if not all(isinstance(t, str) for t in targets):
        raise TypeError(f'targets must be a list of module names (str), got {targets!r}')
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ValueError(f'targets names {repeated} more than once: each entry masks the same tensor again')
    nested = [(outer, inner) for outer in targets for inner in targets if inner.startswith(outer + '.')]
    if nested and not allow_nested:
        raise ValueError(f'targets are nested, {nested}: the inner output is masked again inside the outer one; '
                         f'pass allow_nested_targets=True if that is meant')
    return list(targets)


def penultimate_stage(model: nn.Module) -> str:
    """The name of the backbone's penultimate stage, the paper's place for FD (§5): from
    ``backbone.res_layers`` (the ResNets of mmdet, mmpretrain, mmseg and mmaction2, 2-D and 3-D)
    or a ``backbone.stages`` list."""
    backbone = getattr(model, 'backbone', None)
    stages = list(getattr(backbone, 'res_layers', None) or [])
    if not stages and isinstance(getattr(backbone, 'stages', None), nn.ModuleList):
        stages = [f'stages.{i}' for i in range(len(backbone.stages))]
    if len(stages) < 2:
        raise ValueError(
            'FocusedDropoutHook has no targets and the model no FocusedDropout module, and it finds no '
            'backbone stages (backbone.res_layers or backbone.stages) whose penultimate output is the '
            'paper\'s place for FD (§5): set targets= to one of these modules (or add FocusedDropout '
            f'with plugins=): {_module_overview(model)}')
    return f'backbone.{stages[-2]}'


def _changes(old: Optional[dict], new: Optional[dict]) -> List[str]:
    if old is None or new is None:
        return [f'{old or "no FocusedDropoutHook"} -> {new or "no FocusedDropoutHook"}'] if old != new else []
    return [f'{k} {old.get(k)!r} -> {new.get(k)!r}' for k in new if k != 'modules' and old.get(k) != new.get(k)]


def resumed_history(runner, meta: Optional[dict], settings: Optional[dict]) -> List[dict]:
    """The FocusedDropout history (``from_iter`` and the hook's settings, None without the hook)
    after resuming from a checkpoint with ``meta`` at ``runner.iter``; a changed setting is
    logged as a warning naming old and new values. A run that did not resume starts afresh."""
    current = [dict(from_iter=runner.iter, settings=settings)]
    if not meta or runner.iter == 0:
        return current if settings is not None else []
    history = meta.get('focused_dropout_history') or [dict(from_iter=0, settings=meta.get('focused_dropout'))]
    if not any(h['settings'] for h in history + current):
        return []  # FocusedDropout never ran
    changes = _changes(history[-1]['settings'], settings)
    if not changes:
        return history
    runner.logger.warning(f'FocusedDropout: resumed at iteration {runner.iter} with other settings than the '
                          f'checkpoint was trained with: {"; ".join(changes)}; the checkpoints record both '
                          f'(meta.focused_dropout_history)')
    return history + current


@dataclass
class _Driven:
    """A FocusedDropout module the hook drives, with its calls in the current iteration.

    ``name`` is the module's own name for one in the model, or the target's
    name for one the hook attached to a target's output (``target`` set)."""
    name: str
    module: FocusedDropout
    target: Optional[nn.Module] = None
    positional_dims: Tuple[int, ...] = (2, )  # of the target's output read as a feature map
    calls: int = 0
    warned_keep_all: bool = False

    @property
    def what(self) -> str:
        return f'targets entry {self.name!r}' if self.target is not None else f'FocusedDropout module {self.name!r}'


# convolutions whose outputs are feature maps with 1 and 3 positional dims
CONVOLUTIONS = {1: (nn.Conv1d, nn.ConvTranspose1d), 3: (nn.Conv3d, nn.ConvTranspose3d)}
LAYOUTS = {1: '(N, C, L)', 2: '(N, C, H, W)', 3: '(N, C, T, H, W)'}


def _positional_dims(target: nn.Module) -> Tuple[int, ...]:
    """The positional dims a target's output may have to be read as a feature map (N, C, *S): 2
    always (as FD's images, §4); 1 and 3 only where the target contains a convolution of that many
    dims, since a transformer layer's tokens (N, L, C) are 3-D as well."""
    return (2, ) + tuple(dims for dims, types in CONVOLUTIONS.items()
                         if any(isinstance(m, types) for m in target.modules()))


def _check_feature_map(driven: _Driven, output) -> None:
    """A target's output must be one floating feature map with positional dims it may have."""
    positional = output.dim() - 2 if isinstance(output, torch.Tensor) and output.is_floating_point() else None
    if positional in driven.positional_dims:
        return
    if positional in CONVOLUTIONS:
        convolution = CONVOLUTIONS[positional][0].__name__
        tokens = ' (it may be tokens (N, L, C), as a ViT\'s or Swin\'s layers return)' if positional == 1 else ''
        raise TypeError(
            f'FocusedDropoutHook: {driven.what} returned {_describe(output)} but contains no {convolution}, '
            f'so its output is not read as a feature map {LAYOUTS[positional]}{tokens}; FocusedDropout '
            f'masks convolutional feature maps (§4): target a convolutional stage (e.g. backbone.layer3 '
            f'of a ResNet)')
    raise TypeError(
        f'FocusedDropoutHook: {driven.what} returned {_describe(output)}; FocusedDropout needs one floating '
        f'feature map, {", ".join(LAYOUTS[dims] for dims in driven.positional_dims)} for this target: target '
        f'a module that returns one (e.g. backbone.layer3, not the backbone or a head)')


class FocusedDropoutRecord(Hook):
    """Carries a checkpoint's FocusedDropout history through a run without FocusedDropoutHook
    (``fdrop_mm.apis.train`` registers it), so resuming an FD run without the hook warns."""
    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._meta, self._history = None, []

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._meta = checkpoint.get('meta')

    def before_train(self, runner) -> None:
        self._history = resumed_history(runner, self._meta, None)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._history:
            checkpoint.setdefault('meta', {})['focused_dropout_history'] = self._history


@HOOKS.register_module()
class FocusedDropoutHook(FocusedDropoutRecord):
    """Runs FocusedDropout on a random fraction of optimizer steps and magnifies weight decay
    on those steps (§4, §5.2), in any mmengine Runner; see docs/hook.md.

    Args:
        participation: probability that an optimizer step is focused (paper: 0.1).
        weight_decay_multiplier: weight decay factor of a focused ``optimizer.step()`` (paper: 2).
        targets: modules whose outputs get a FocusedDropout; the model's own FocusedDropout
            modules are driven too. None with no such module: the backbone's penultimate stage.
        gamma_range: γ ~ U(gamma_range) per sample (§4).
        mode: ``'focused'``, ``'opposite'`` (§5.2.4) or ``'weight_decay_only'`` (Table 4).
        seed: decisions are a pure function of (seed, step); None: rank 0's runner seed.
        allow_nested_targets: accept a target inside another (the inner output is masked twice).
    """

    priority = 'NORMAL'

    def __init__(self,
                 participation: float = 0.1,
                 weight_decay_multiplier: float = 2.0,
                 targets: Optional[Sequence[str]] = None,
                 gamma_range: Tuple[float, float] = (0.3, 0.6),
                 mode: str = 'focused',
                 seed: Optional[int] = None,
                 allow_nested_targets: bool = False) -> None:
        super().__init__()
        if not 0.0 <= _number(participation, 'participation') <= 1.0:
            raise ValueError(f'participation must lie in [0, 1], got {participation}')
        multiplier = _number(weight_decay_multiplier, 'weight_decay_multiplier')
        if not (math.isfinite(multiplier) and multiplier >= 0):
            raise ValueError(f'weight_decay_multiplier must be a finite number >= 0, got {weight_decay_multiplier}')
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TypeError(f'seed must be an int or None, got {seed!r}')
        if seed is not None and not 0 <= seed < SEED_LIMIT:
            raise ValueError(f'seed must lie in [0, 2**63), got {seed}')
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if targets is not None and mode == 'weight_decay_only':
            raise ValueError("targets must be None with mode='weight_decay_only' (it applies no mask)")
        self.participation = float(participation)
        self.weight_decay_multiplier = multiplier
        self.allow_nested_targets = bool(allow_nested_targets)
        self.targets = _check_targets(targets, self.allow_nested_targets)
        self.mode = mode
        self.seed = None if seed is None else int(seed)
        self._seed = self.seed  # resolved in before_train when None
        self.gamma_range = as_gamma_range(gamma_range)  # validated now, not at the first iteration
        self._driven: List[_Driven] = []
        self._module_names: Optional[List[str]] = None  # known from before_train on, kept after train
        self._handles: list = []
        self._focused_step = False
        self._in_train_iter = False
        self._optimizers: List[Tuple[str, torch.optim.Optimizer]] = []
        self._step_decay: Dict[str, float] = {}  # weight decay of the steps taken in this iteration
        self._unwrap: list = []

    @property
    def opposite(self) -> bool:
        """Whether the masks keep the complement of the focused area (``mode='opposite'``)."""
        return self.mode == 'opposite'

    @property
    def _modules(self) -> List[FocusedDropout]:
        return [d.module for d in self._driven]

    @property
    def masking(self) -> bool:
        """Whether the current training iteration is focused and applies masks."""
        return self._focused_step and self.mode != 'weight_decay_only'

    @property
    def driven_modules(self) -> List[Tuple[str, FocusedDropout]]:
        """(name, module) of every FocusedDropout the hook drives, in seeding order."""
        return [(d.name, d.module) for d in self._driven]

    # decisions -----------------------------------------------------------
    def is_focused_step(self, step: int) -> bool:
        """Whether optimizer step ``step`` is focused: a pure function of (seed, step)."""
        if self.participation <= 0.0:
            return False
        return bool(np.random.default_rng([self._seed, step]).random() < self.participation)

    def gamma_seed(self, iteration: int, rank: int, index: int) -> int:
        """Seed of FocusedDropout module ``index``'s γ at ``iteration`` on ``rank``: a pure
        function of (seed, iteration, rank, index), so a resumed run draws the same γ."""
        return int(np.random.SeedSequence([self._seed, iteration, rank, index, 0xFD]).generate_state(1)[0])

    # setup ---------------------------------------------------------------
    def before_train(self, runner) -> None:
        hooks = [h for h in runner.hooks if isinstance(h, FocusedDropoutHook)]
        if len(hooks) > 1:
            raise ValueError(
                f'custom_hooks: {len(hooks)} FocusedDropoutHooks; keep one (each would magnify the weight '
                f'decay of a focused step, x{np.prod([h.weight_decay_multiplier for h in hooks]):g} in all, and '
                f'decide its own focused steps): ' + ', '.join(repr(h) for h in hooks))
        seed = [int(runner.seed if self.seed is None else self.seed)]
        broadcast_object_list(seed)  # runner.seed differs per rank under diff_rank_seed
        self._seed = seed[0]
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._driven = []
        self._collect(model)
        targets = self.targets
        if targets is None and not self._driven and self.mode != 'weight_decay_only':
            targets = [penultimate_stage(model)]
            runner.logger.info(f'FocusedDropoutHook: no targets and no FocusedDropout module in the model: '
                               f'FD goes on the output of the penultimate stage, {targets[0]} (§5)')
        if targets is not None:
            self._attach(model, targets)
        self._module_names = [d.name for d in self._driven]
        self._optimizers = self._named_optimizers(runner)
        for name, optimizer in self._optimizers:
            self._wrap_step(name, optimizer)
        self._accumulation = self._accumulative_counts(runner)  # micro-batches per optimizer step
        self._history = resumed_history(runner, self._meta, self.settings())
        runner.logger.info(
            f'FocusedDropoutHook: mode={self.mode}, participation={self.participation}, '
            f'weight_decay x{self.weight_decay_multiplier} on focused steps, seed={self._seed}, '
            f'{self._accumulation} micro-batch(es) per step, '
            f'{len(self._module_names)} FocusedDropout module(s): {self._module_names}')

    def _collect(self, model: nn.Module) -> None:
        """Drive the FocusedDropout modules already in the model."""
        for name, module in model.named_modules():
            if not isinstance(module, FocusedDropout):
                continue
            if self.mode != 'weight_decay_only' and (
                    module.gamma_range != self.gamma_range or module.opposite != self.opposite):
                raise ValueError(
                    f'FocusedDropout module {name!r} has gamma_range={module.gamma_range}, '
                    f'opposite={module.opposite} but the hook has gamma_range='
                    f'{self.gamma_range}, mode={self.mode!r}; make them agree')
            driven = _Driven(name, module)
            self._handles.append(module.register_forward_pre_hook(
                lambda m, args, driven=driven: self._called(driven, m.training)))
            self._drive(driven)

    def _attach(self, model: nn.Module, targets: List[str]) -> None:
        """Attach a FocusedDropout to each target's output."""
        names = dict(model.named_modules())
        for target in targets:
            if target not in names:
                near = difflib.get_close_matches(target, list(names), n=5, cutoff=0.5)
                raise ValueError(f'targets: no module named {target!r} in {type(model).__name__}; '
                                 f'closest: {near}; top-level modules: {_module_overview(model)}')
            driven = _Driven(target, FocusedDropout(gamma_range=self.gamma_range, opposite=self.opposite),
                             names[target], _positional_dims(names[target]))
            self._handles.append(names[target].register_forward_hook(
                functools.partial(self._masked_output, driven)))
            self._drive(driven)

    def _drive(self, driven: _Driven) -> None:
        driven.module.driven = True
        driven.module.active = False
        self._driven.append(driven)

    def _masked_output(self, driven: _Driven, target: nn.Module, args, output):
        if self._in_train_iter and not _in_backward():
            _check_feature_map(driven, output)
        self._called(driven, target.training)
        driven.module.training = target.training  # identity whenever the target is in eval
        return driven.module(output)

    def _called(self, driven: _Driven, training: bool) -> None:
        """Count a training iteration's forward of ``driven``, whatever calls it (the stock or a
        custom ``train_step``); a forward the backward recomputes (with_cp) reuses the γ."""
        if not self._in_train_iter:
            return
        if _in_backward():
            driven.module.hold_gamma()
            return
        driven.calls += 1
        if driven.calls > 1:
            raise RuntimeError(
                f'FocusedDropoutHook: {driven.what} ran a second time in one training iteration, so it '
                f'would mask twice; target a module that runs once per forward (e.g. a stage or block, '
                f'not a ReLU that a Bottleneck calls three times)')
        if self.masking and not training:
            raise RuntimeError(
                f'FocusedDropoutHook: {driven.what} is in eval mode during training, so it cannot '
                f'mask: its stage is frozen (frozen_stages covers it) or the model put it in eval; '
                f'target or plug into a trainable stage')

    # optimizers ----------------------------------------------------------
    @staticmethod
    def _wrappers(runner) -> Dict[str, object]:
        wrappers = runner.optim_wrapper
        return dict(wrappers.items()) if hasattr(wrappers, 'items') else {'optim_wrapper': wrappers}

    def _named_optimizers(self, runner) -> List[Tuple[str, torch.optim.Optimizer]]:
        return [(name, wrapper.optimizer) for name, wrapper in self._wrappers(runner).items()]

    def _accumulative_counts(self, runner) -> int:
        """Iterations per optimizer step, from the built wrappers (mmengine steps when its count
        of backwards, which starts at the resumed iteration, is a multiple of it or the last)."""
        counts = {name: int(getattr(w, '_accumulative_counts', 1)) for name, w in self._wrappers(runner).items()}
        if len(set(counts.values())) > 1:
            raise ValueError(f'optim_wrapper: the optimizer wrappers accumulate different numbers of '
                             f'micro-batches per step, {counts}; FocusedDropoutHook decides once per optimizer '
                             f'step (§4) and needs them to agree')
        return next(iter(counts.values()))

    def _wrap_step(self, name: str, optimizer) -> None:
        """Magnify the weight decay inside ``optimizer.step`` itself (an instance attribute,
        removed in ``after_train``), so only the step sees it (not weight-decay schedulers, saved
        optimizer state or a caller of a step that raised), and record what the step used.
        GradScaler skips the call on a step it skips, so nothing is recorded then."""
        if getattr(optimizer.step, 'focused_dropout_hook', None) is self:  # before_train ran twice
            return
        step = optimizer.step
        multiplier = self.weight_decay_multiplier

        @functools.wraps(step)
        def step_with_magnified_weight_decay(*args, **kwargs):
            groups = optimizer.param_groups
            if not self._focused_step or multiplier == 1.0:
                self._step_decay[name] = _largest_weight_decay(groups)
                return step(*args, **kwargs)
            base = [group['weight_decay'] for group in groups]
            for group, decay in zip(groups, base):
                group['weight_decay'] = decay * multiplier
            self._step_decay[name] = _largest_weight_decay(groups)
            try:
                return step(*args, **kwargs)
            finally:
                for group, decay in zip(groups, base):
                    group['weight_decay'] = decay

        step_with_magnified_weight_decay.focused_dropout_hook = self
        optimizer.step = step_with_magnified_weight_decay
        self._unwrap.append(lambda: vars(optimizer).pop('step', None))

    # per iteration -------------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._focused_step = self.is_focused_step(runner.iter // self._accumulation)
        self._in_train_iter = True
        self._step_decay.clear()
        for index, driven in enumerate(self._driven):
            driven.calls = 0
            driven.module.active = self.masking
            driven.module.last_keep_ratio = None
            driven.module.seed_gamma(self.gamma_seed(runner.iter, runner.rank, index) if self.masking else None)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._in_train_iter = False
        if self.masking:
            missing = [d.what for d in self._driven if d.calls == 0]
            if missing:
                raise RuntimeError(f'FocusedDropoutHook: {", ".join(missing)} did not run in the training '
                                   f'iteration {runner.iter}, a focused one, so nothing was masked there')
        hub = runner.message_hub
        ratios = [d.module.last_keep_ratio for d in self._driven]
        applied = self.masking and all(r is not None for r in ratios)
        hub.update_scalar('train/fd/active', float(applied))
        self._log_weight_decay(hub)
        if applied:  # only on focused iterations: the .tolist() below syncs once
            ratios = torch.stack([r.float() for r in ratios]).tolist()
            if self.allow_nested_targets:  # nested masks: an average would not be what was kept
                for driven, ratio in zip(self._driven, ratios):
                    hub.update_scalar(f'train/fd/keep_ratio/{driven.name}', ratio)
            else:
                hub.update_scalar('train/fd/keep_ratio', sum(ratios) / len(ratios))
            self._warn_keep_all(runner, ratios)
        for module in self._modules:
            module.active = False
        self._focused_step = False

    def _log_weight_decay(self, hub) -> None:
        """The weight decay each optimizer's step used in this iteration (its base value where
        none stepped: an accumulation micro-batch, a step GradScaler skipped); ``fd/weight_decay``
        is the largest, and with several optimizers each is logged under its name too."""
        used = {name: self._step_decay.get(name, _largest_weight_decay(optimizer.param_groups))
                for name, optimizer in self._optimizers}
        hub.update_scalar('train/fd/weight_decay', max(used.values(), default=0.0))
        if len(used) > 1:
            for name, decay in used.items():
                hub.update_scalar(f'train/fd/weight_decay/{name}', decay)

    def _warn_keep_all(self, runner, ratios: List[float]) -> None:
        for driven, ratio in zip(self._driven, ratios):
            if ratio == 1.0 and not driven.warned_keep_all:
                driven.warned_keep_all = True
                runner.logger.warning(
                    f'FocusedDropoutHook: {driven.what} kept every position at iteration {runner.iter}: '
                    f'its reference channel is nowhere positive (e.g. the output of norm3, which '
                    f'zero_init_residual=True sets to exactly 0 at initialisation, until those weights '
                    f'grow); fd/keep_ratio shows when it starts to drop (logged once per module)')

    def settings(self) -> dict:
        """What this hook does, as plain data: its arguments, ``seed`` as resolved and the names
        of the modules it drives (both None until ``before_train`` finds them)."""
        return dict(type=type(self).__name__, participation=self.participation,
                    weight_decay_multiplier=self.weight_decay_multiplier, targets=self.targets,
                    gamma_range=self.gamma_range, mode=self.mode, seed=self._seed,
                    modules=self._module_names)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record ``settings()`` in the checkpoint's ``meta['focused_dropout']`` and, in
        ``meta['focused_dropout_history']``, which settings ran from which iteration; the
        backbone transfer reads both (``fdrop_mm.transfer.extract_backbone``)."""
        meta = checkpoint.setdefault('meta', {})
        meta['focused_dropout'] = self.settings()
        meta['focused_dropout_history'] = self._history or [dict(from_iter=runner.iter, settings=self.settings())]

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        for unwrap in self._unwrap:
            unwrap()
        self._handles.clear()
        self._unwrap.clear()
        self._driven.clear()
