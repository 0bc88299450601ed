"""FocusedDropoutHook: the participation rate and magnified weight decay (§4, §5.2)."""
import difflib
import functools
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from .focused_dropout import FocusedDropout
from .visualization import MaskSnapshot

MODES = ('focused', 'opposite', 'weight_decay_only')


def _module_overview(model: nn.Module, depth: int = 2) -> List[str]:
    """Module names up to ``depth`` levels, for error messages."""
    return [name for name, _ in model.named_modules() if name and name.count('.') < depth]


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
            group" (§5). ``None``: drive the FocusedDropout modules already in the
            model (e.g. from mmdet ResNet's ``plugins=``).
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
        vis_interval: every ``vis_interval``-th focused iteration, send the first
            ``vis_samples`` samples' input image, reference channel and kept
            positions (of the first FocusedDropout module) to the runner's
            visualizer as ``fd_mask`` (TensorBoard, or ``vis_data/vis_image``
            with the LocalVisBackend); 0 turns it off. See
            ``fdrop_mm.visualization.MaskSnapshot``.
        vis_samples: how many samples of the batch to draw.

    With the modules already in the model (``targets=None``), their
    ``gamma_range`` and ``opposite`` must agree with the hook's: a disagreement
    is an error rather than a silent override.

    Table 4 by config: FD + MWD ``dict(type='FocusedDropoutHook')``; FD without
    MWD ``weight_decay_multiplier=1``; randomly MWD ``mode='weight_decay_only'``;
    opposite ``mode='opposite'`` (with ``weight_decay_multiplier=1`` for no MWD).

    Logged every iteration through the MessageHub: ``fd/active`` (0/1),
    ``fd/weight_decay`` (the largest group weight decay in force) and, on focused
    iterations only, ``fd/keep_ratio`` (fraction of spatial positions kept).
    """

    priority = 'NORMAL'

    def __init__(self,
                 participation: float = 0.1,
                 weight_decay_multiplier: float = 2.0,
                 targets: Optional[Sequence[str]] = None,
                 gamma_range: Tuple[float, float] = (0.3, 0.6),
                 mode: str = 'focused',
                 seed: Optional[int] = None,
                 vis_interval: int = 0,
                 vis_samples: int = 4) -> None:
        if not 0.0 <= float(participation) <= 1.0:
            raise ValueError(f'participation must lie in [0, 1], got {participation}')
        if float(weight_decay_multiplier) < 0:
            raise ValueError(f'weight_decay_multiplier must be >= 0, got {weight_decay_multiplier}')
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        if isinstance(targets, str):
            raise ValueError(f"targets must be a list of module names, got the string {targets!r}; "
                             f"write [{targets!r}]")
        if targets is not None and mode == 'weight_decay_only':
            raise ValueError("targets must be None with mode='weight_decay_only' (it applies no mask)")
        if targets is not None and len(targets) == 0:
            raise ValueError('targets must name at least one module, or be None')
        if isinstance(vis_interval, bool) or not isinstance(vis_interval, int) or vis_interval < 0:
            raise ValueError(f'vis_interval must be an int >= 0 (0: off), got {vis_interval!r}')
        if isinstance(vis_samples, bool) or not isinstance(vis_samples, int) or vis_samples < 1:
            raise ValueError(f'vis_samples must be an int >= 1, got {vis_samples!r}')
        if vis_interval and mode == 'weight_decay_only':
            raise ValueError("vis_interval must be 0 with mode='weight_decay_only' (it applies no mask to draw)")
        self.participation = float(participation)
        self.weight_decay_multiplier = float(weight_decay_multiplier)
        self.targets = list(targets) if targets is not None else None
        self.mode = mode
        self.seed = seed
        self.vis_interval = vis_interval
        self.vis_samples = vis_samples
        self._focused_iters = 0
        self._snapshot: Optional[MaskSnapshot] = None
        # builds and validates gamma_range now, not at the first iteration
        self._template = FocusedDropout(gamma_range=gamma_range, opposite=mode == 'opposite')
        self._modules: List[FocusedDropout] = []
        self._handles: list = []
        self._focused_step = False
        self._wrapped_optimizers: set = set()

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
        seed = [int(runner.seed if self.seed is None else self.seed)]
        broadcast_object_list(seed)  # runner.seed differs per rank under diff_rank_seed
        self._seed = seed[0]
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self.targets is not None:
            self._attach(model)
        else:
            self._collect(model)
        for optimizer in self._optimizers(runner):
            self._wrap_step(optimizer)
        runner.logger.info(
            f'FocusedDropoutHook: mode={self.mode}, participation={self.participation}, '
            f'weight_decay x{self.weight_decay_multiplier} on focused steps, seed={self._seed}, '
            f'{len(self._modules)} FocusedDropout module(s)')

    def _attach(self, model: nn.Module) -> None:
        names = dict(model.named_modules())
        for target in self.targets:
            if target not in names:
                near = difflib.get_close_matches(target, list(names), n=5, cutoff=0.5)
                raise ValueError(f'targets: no module named {target!r} in {type(model).__name__}; '
                                 f'closest: {near}; top-level modules: {_module_overview(model)}')
            module = FocusedDropout(gamma_range=self._template.gamma_range,
                                    opposite=self._template.opposite)
            module.active = False
            self._modules.append(module)
            self._handles.append(names[target].register_forward_hook(
                functools.partial(self._masked_output, module)))

    @staticmethod
    def _masked_output(module: FocusedDropout, target: nn.Module, args, output):
        module.training = target.training  # identity whenever the target is in eval
        return module(output)

    def _collect(self, model: nn.Module) -> None:
        found = [(name, m) for name, m in model.named_modules() if isinstance(m, FocusedDropout)]
        if not found and self.mode != 'weight_decay_only':
            raise ValueError(
                'FocusedDropoutHook has nothing to drive: the model has no FocusedDropout module '
                '(add one with plugins=, or set targets= to one of these modules): '
                f'{_module_overview(model)}')
        for name, module in found:
            if self.mode != 'weight_decay_only' and (
                    module.gamma_range != self._template.gamma_range
                    or module.opposite != self._template.opposite):
                raise ValueError(
                    f'FocusedDropout module {name!r} has gamma_range={module.gamma_range}, '
                    f'opposite={module.opposite} but the hook has gamma_range='
                    f'{self._template.gamma_range}, mode={self.mode!r}; make them agree')
            module.active = False
            self._modules.append(module)

    @staticmethod
    def _optimizers(runner):
        wrappers = runner.optim_wrapper
        wrappers = wrappers.values() if hasattr(wrappers, 'values') else [wrappers]
        return [w.optimizer for w in wrappers]

    def _wrap_step(self, optimizer) -> None:
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

    # per iteration -------------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        accumulation = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        self._focused_step = self.is_focused_step(runner.iter // accumulation)
        mask_on = self._focused_step and self.mode != 'weight_decay_only'
        for index, module in enumerate(self._modules):
            module.active = mask_on
            module.last_keep_ratio = None
            module.seed_gamma(self.gamma_seed(runner.iter, runner.rank, index) if mask_on else None)
        if mask_on and self.vis_interval:
            self._focused_iters += 1
            if self._focused_iters % self.vis_interval == 0 and is_main_process():
                model = runner.model.module if is_model_wrapper(runner.model) else runner.model
                self._snapshot = MaskSnapshot(model, self._modules[0], self.vis_samples)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        hub = runner.message_hub
        hub.update_scalar('train/fd/active', float(self._focused_step))
        decay = max((g['weight_decay'] for g in self._optimizers(runner)[0].param_groups), default=0.0)
        factor = self.weight_decay_multiplier if self._focused_step else 1.0
        hub.update_scalar('train/fd/weight_decay', decay * factor)
        ratios = [m.last_keep_ratio for m in self._modules if m.last_keep_ratio is not None]
        if ratios:  # only on focused iterations: the .item() below syncs
            hub.update_scalar('train/fd/keep_ratio', float(sum(ratios).item()) / len(ratios))
        if self._snapshot is not None:
            runner.visualizer.add_image('fd_mask', self._snapshot.render(), step=runner.iter + 1)
            self._snapshot.remove()
            self._snapshot = None
        for module in self._modules:
            module.active = False
        self._focused_step = False

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._modules.clear()
