"""FocusedDropoutHook: which steps are focused (§4), the modules it drives, and the magnified
weight decay on those steps (§5.2)."""
import difflib
import functools
import numbers
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ...focused_dropout import FocusedDropout, as_gamma_range

MODES = ('focused', 'opposite', 'weight_decay_only')


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


@dataclass
class _Driven:
    """A FocusedDropout module the hook drives, with its calls in the current forward.

    ``name`` is the module's own name for one in the model, or the target's
    name for one the hook attached to a target's output (``target`` set)."""
    name: str
    module: FocusedDropout
    target: Optional[nn.Module] = None
    calls: int = 0
    eval_calls: int = 0
    warned_keep_all: bool = False

    @property
    def what(self) -> str:
        return f'targets entry {self.name!r}' if self.target is not None else f'FocusedDropout module {self.name!r}'


@HOOKS.register_module()
class FocusedDropoutHook(Hook):
    """Runs FocusedDropout on a random fraction of optimizer steps and magnifies
    weight decay on those steps, in any mmengine Runner.

    Args:
        participation: probability that an optimizer step is a focused one; the
            paper uses 0.1 ("10% of batches", §4, §5.2.1).
        weight_decay_multiplier: on focused steps every param group's
            ``weight_decay`` is multiplied by it for that ``optimizer.step()``
            and restored right after, also when the step raises; groups with
            weight decay 0 stay 0. The paper's best weight decay is 1e-3 against
            a 5e-4 base (§5.2.3, Fig. 6c), hence 2. Use 1 for "FD without MWD".
        targets: module names (e.g. ``['backbone.layer3']``) whose outputs get a
            FocusedDropout attached by a forward hook, without touching the
            model's code; the paper puts it on "the output of the penultimate
            group" (§5). A target must return one (N, C, H, W) tensor and run
            once per forward. The FocusedDropout modules already in the model
            (e.g. from mmdet ResNet's ``plugins=``) are driven too, with or
            without targets.
        gamma_range: γ ~ U(gamma_range) per sample (§4); low == high fixes it.
        mode: ``'focused'`` keeps the focused area (the method); ``'opposite'``
            keeps its complement (§5.2.4); ``'weight_decay_only'`` applies no mask
            and only magnifies weight decay on the randomly chosen steps (Table
            4's "randomly MWD").
        seed: the decision for optimizer step ``s`` is a pure function of
            (seed, s), so all DDP ranks agree without communication and a resumed
            run repeats an uninterrupted run's sequence. ``None`` takes rank 0's
            runner seed (broadcast once before training; mmengine restores it on
            resume). On focused iterations the modules draw γ from a generator
            seeded with (seed, iteration, rank, module), not from torch's global
            RNG (which mmengine does not restore), so a resumed run draws the same γ.

    The modules already in the model must have the hook's ``gamma_range`` and
    ``opposite``: a disagreement is an error rather than a silent override.

    Nothing runs quietly wrong; each of these is an error naming the module:
    a driven module (or a target) in eval mode on a focused iteration (a stage
    frozen by ``frozen_stages``, or put in eval by the user), one that did not
    run in a focused forward, one that ran more than once in a forward (e.g. a
    ReLU a Bottleneck calls three times), a target whose output is not one
    (N, C, H, W) floating tensor (checked at its first training forward), and
    a second FocusedDropoutHook (it would magnify the weight decay twice).
    Under activation checkpointing (``with_cp=True``) the forward that the
    backward recomputes reuses the iteration's γ (``FocusedDropout.hold_gamma``),
    so it builds the mask the network used. A module whose reference channel
    is never positive keeps every position; the first focused iteration where
    a module keeps everything is logged as a warning (mmdet's and mmpretrain's
    ResNet zero-initialise norm3 with ``zero_init_residual=True``, so a plugin
    ``after_conv3`` sees exactly 0 at the start of training from scratch).

    Table 4 by config: FD + MWD ``dict(type='FocusedDropoutHook')``; FD without
    MWD ``weight_decay_multiplier=1``; randomly MWD ``mode='weight_decay_only'``;
    opposite ``mode='opposite'`` (with ``weight_decay_multiplier=1`` for no MWD).

    Logged every iteration through the MessageHub: ``fd/active`` (1 when every
    driven module applied its mask this iteration, else 0; always 0 with
    ``mode='weight_decay_only'``), ``fd/weight_decay`` (the largest group weight
    decay in force) and, on every focused iteration, ``fd/keep_ratio`` (fraction
    of spatial positions kept, averaged over the modules).
    """

    priority = 'NORMAL'

    def __init__(self,
                 participation: float = 0.1,
                 weight_decay_multiplier: float = 2.0,
                 targets: Optional[Sequence[str]] = None,
                 gamma_range: Tuple[float, float] = (0.3, 0.6),
                 mode: str = 'focused',
                 seed: Optional[int] = None) -> None:
        if not 0.0 <= _number(participation, 'participation') <= 1.0:
            raise ValueError(f'participation must lie in [0, 1], got {participation}')
        if _number(weight_decay_multiplier, 'weight_decay_multiplier') < 0:
            raise ValueError(f'weight_decay_multiplier must be >= 0, got {weight_decay_multiplier}')
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
            raise TypeError(f'seed must be an int or None, got {seed!r}')
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if isinstance(targets, str):
            raise ValueError(f"targets must be a list of module names, got the string {targets!r}; "
                             f"write [{targets!r}]")
        if targets is not None and mode == 'weight_decay_only':
            raise ValueError("targets must be None with mode='weight_decay_only' (it applies no mask)")
        if targets is not None and len(targets) == 0:
            raise ValueError('targets must name at least one module, or be None')
        if targets is not None and not all(isinstance(t, str) for t in targets):
            raise TypeError(f'targets must be a list of module names (str), got {targets!r}')
        self.participation = float(participation)
        self.weight_decay_multiplier = float(weight_decay_multiplier)
        self.targets = list(targets) if targets is not None else None
        self.mode = mode
        self.seed = None if seed is None else int(seed)
        # validates gamma_range now, not at the first iteration
        self._template = FocusedDropout(gamma_range=as_gamma_range(gamma_range), opposite=mode == 'opposite')
        self._driven: List[_Driven] = []
        self._handles: list = []
        self._focused_step = False
        self._in_train_iter = False
        self._in_forward = False  # inside the model's forward of a training iteration
        self._wrapped_optimizers: set = set()
        self._unwrap: list = []

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
        self._collect(model)
        if self.targets is not None:
            self._attach(model)
        if not self._driven and self.mode != 'weight_decay_only':
            raise ValueError(
                'FocusedDropoutHook has nothing to drive: the model has no FocusedDropout module '
                '(add one with plugins=, or set targets= to one of these modules): '
                f'{_module_overview(model)}')
        # the model's own forward bounds "one forward": a forward that activation checkpointing
        # recomputes runs later, in the backward, and is neither counted nor given a new γ
        self._handles.append(model.register_forward_pre_hook(self._forward_starts))
        self._handles.append(model.register_forward_hook(self._forward_ends))
        for optimizer in self._optimizers(runner):
            self._wrap_step(optimizer)
        # iterations per optimizer step (the decision is per step, §4), as the config sets it
        self._accumulation = int((runner.cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1))
        names = [d.name for d in self._driven]
        runner.logger.info(
            f'FocusedDropoutHook: mode={self.mode}, participation={self.participation}, '
            f'weight_decay x{self.weight_decay_multiplier} on focused steps, seed={self._seed}, '
            f'{len(names)} FocusedDropout module(s): {names}')

    def _collect(self, model: nn.Module) -> None:
        """Drive the FocusedDropout modules already in the model."""
        for name, module in model.named_modules():
            if not isinstance(module, FocusedDropout):
                continue
            if self.mode != 'weight_decay_only' and (
                    module.gamma_range != self._template.gamma_range
                    or module.opposite != self._template.opposite):
                raise ValueError(
                    f'FocusedDropout module {name!r} has gamma_range={module.gamma_range}, '
                    f'opposite={module.opposite} but the hook has gamma_range='
                    f'{self._template.gamma_range}, mode={self.mode!r}; make them agree')
            driven = _Driven(name, module)
            self._handles.append(module.register_forward_pre_hook(
                lambda m, args, driven=driven: self._called(driven, m.training)))
            self._drive(driven)

    def _attach(self, model: nn.Module) -> None:
        """Attach a FocusedDropout to each target's output."""
        names = dict(model.named_modules())
        for target in self.targets:
            if target not in names:
                near = difflib.get_close_matches(target, list(names), n=5, cutoff=0.5)
                raise ValueError(f'targets: no module named {target!r} in {type(model).__name__}; '
                                 f'closest: {near}; top-level modules: {_module_overview(model)}')
            driven = _Driven(target, FocusedDropout(gamma_range=self._template.gamma_range,
                                                    opposite=self._template.opposite), names[target])
            self._handles.append(names[target].register_forward_hook(
                functools.partial(self._masked_output, driven)))
            self._drive(driven)

    def _drive(self, driven: _Driven) -> None:
        driven.module.driven = True
        driven.module.active = False
        self._driven.append(driven)

    def _masked_output(self, driven: _Driven, target: nn.Module, args, output):
        if self._in_forward and not (isinstance(output, torch.Tensor) and output.dim() == 4
                                     and output.is_floating_point()):
            raise TypeError(f'FocusedDropoutHook: {driven.what} returned {_describe(output)}; '
                            f'FocusedDropout needs one (N, C, H, W) floating tensor: target a module that '
                            f'returns one (e.g. backbone.layer3, not the backbone or a head)')
        self._called(driven, target.training)
        driven.module.training = target.training  # identity whenever the target is in eval
        return driven.module(output)

    def _called(self, driven: _Driven, training: bool) -> None:
        if self._in_forward:
            driven.calls += 1
            driven.eval_calls += not training

    def _forward_starts(self, model, args) -> None:
        if self._in_train_iter:
            self._in_forward = True
            for driven in self._driven:
                driven.calls = driven.eval_calls = 0

    def _forward_ends(self, model, args, output) -> None:
        if not self._in_forward:
            return
        self._in_forward = False
        for driven in self._driven:
            if driven.calls > 1:
                raise RuntimeError(
                    f'FocusedDropoutHook: {driven.what} ran {driven.calls} times in one forward, so it '
                    f'would mask {driven.calls} times; target a module that runs once per forward '
                    f'(e.g. a stage or block, not a ReLU that a Bottleneck calls three times)')
            if not self.masking:
                continue
            if driven.calls == 0:
                raise RuntimeError(f'FocusedDropoutHook: {driven.what} did not run in the forward of a '
                                   f'focused iteration, so nothing was masked')
            if driven.eval_calls:
                raise RuntimeError(
                    f'FocusedDropoutHook: {driven.what} is in eval mode during training, so it cannot '
                    f'mask: its stage is frozen (frozen_stages covers it) or the model put it in eval; '
                    f'target or plug into a trainable stage')
            driven.module.hold_gamma()  # a recomputed forward (with_cp) reuses this γ

    @staticmethod
    def _optimizers(runner):
        wrappers = runner.optim_wrapper
        wrappers = wrappers.values() if hasattr(wrappers, 'values') else [wrappers]
        return [w.optimizer for w in wrappers]

    def _wrap_step(self, optimizer) -> None:
        """Magnify the weight decay inside ``optimizer.step`` itself (an instance attribute,
        removed in ``after_train``). Setting it in ``before_train_iter`` and restoring it in
        ``after_train_iter`` would leave the magnified value in the param groups for every
        reader in between and after a step that raises: mmengine's weight-decay schedulers
        (which scale the current value), optimizer state saved in a checkpoint, a caller that
        catches the error. Inside the step, only the step sees it."""
        if id(optimizer) in self._wrapped_optimizers:
            return
        self._wrapped_optimizers.add(id(optimizer))
        step = optimizer.step
        multiplier = self.weight_decay_multiplier

        @functools.wraps(step)
        def step_with_magnified_weight_decay(*args, **kwargs):
            if not self._focused_step or multiplier == 1.0:
                return step(*args, **kwargs)
            base = [group['weight_decay'] for group in optimizer.param_groups]
            for group, decay in zip(optimizer.param_groups, base):
                group['weight_decay'] = decay * multiplier
            try:
                return step(*args, **kwargs)
            finally:
                for group, decay in zip(optimizer.param_groups, base):
                    group['weight_decay'] = decay

        optimizer.step = step_with_magnified_weight_decay
        self._unwrap.append(lambda: vars(optimizer).pop('step', None))

    # per iteration -------------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._focused_step = self.is_focused_step(runner.iter // self._accumulation)
        self._in_train_iter = True
        for index, module in enumerate(self._modules):
            module.active = self.masking
            module.last_keep_ratio = None
            module.seed_gamma(self.gamma_seed(runner.iter, runner.rank, index) if self.masking else None)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        hub = runner.message_hub
        ratios = [d.module.last_keep_ratio for d in self._driven]
        applied = self.masking and all(r is not None for r in ratios)
        hub.update_scalar('train/fd/active', float(applied))
        decay = max((g['weight_decay'] for g in self._optimizers(runner)[0].param_groups), default=0.0)
        factor = self.weight_decay_multiplier if self._focused_step else 1.0
        hub.update_scalar('train/fd/weight_decay', decay * factor)
        if applied:  # only on focused iterations: the .tolist() below syncs once
            ratios = torch.stack([r.float() for r in ratios]).tolist()
            hub.update_scalar('train/fd/keep_ratio', sum(ratios) / len(ratios))
            self._warn_keep_all(runner, ratios)
        for module in self._modules:
            module.active = False
        self._focused_step = self._in_train_iter = False

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
        """What this hook does, as plain data: its arguments (``seed`` as resolved) and the
        names of the modules it drives."""
        return dict(type=type(self).__name__, participation=self.participation,
                    weight_decay_multiplier=self.weight_decay_multiplier, targets=self.targets,
                    gamma_range=self._template.gamma_range, mode=self.mode, seed=self._seed,
                    modules=[d.name for d in self._driven])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record ``settings()`` in the checkpoint's ``meta['focused_dropout']``, where the
        backbone transfer reads it (``fdrop_mm.transfer.extract_backbone``)."""
        checkpoint.setdefault('meta', {})['focused_dropout'] = self.settings()

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        for unwrap in self._unwrap:
            unwrap()
        self._handles.clear()
        self._unwrap.clear()
        self._wrapped_optimizers.clear()
        self._driven.clear()

