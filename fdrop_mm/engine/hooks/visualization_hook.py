"""FocusedDropoutVisualizationHook: pictures of the mask while training (§4, Fig. 3)."""
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...visualization import MaskSnapshot
from .focused_dropout_hook import FocusedDropoutHook


@HOOKS.register_module()
class FocusedDropoutVisualizationHook(Hook):
    """Pictures of the mask while training (§4, Fig. 3): every ``interval``-th focused
    iteration, the first ``num_samples`` samples' input image, reference channel and kept
    positions of the first module ``FocusedDropoutHook`` drives, titled with the module's name
    and the iteration, sent to the runner's visualizer as ``fd_mask`` (TensorBoard, or
    ``vis_data/vis_image/fd_mask_<iter>.png`` with the LocalVisBackend). See
    ``fdrop_mm.visualization.MaskSnapshot``.

    Needs a FocusedDropoutHook in the same config; runs after it (priority LOW), so it sees
    the iteration's decision.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 50, num_samples: int = 4) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be an int >= 1, got {interval!r}')
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f'num_samples must be an int >= 1, got {num_samples!r}')
        self.interval = interval
        self.num_samples = num_samples
        self._focused_iters = 0
        self._snapshot: Optional[MaskSnapshot] = None
        self._fd_hook: Optional[FocusedDropoutHook] = None

    def before_train(self, runner) -> None:
        hooks = [h for h in runner.hooks if isinstance(h, FocusedDropoutHook)]
        if not hooks:
            raise ValueError('FocusedDropoutVisualizationHook needs a FocusedDropoutHook in custom_hooks')
        if hooks[0].mode == 'weight_decay_only':
            raise ValueError("FocusedDropoutVisualizationHook: the FocusedDropoutHook has "
                             "mode='weight_decay_only', which applies no mask to draw")
        self._fd_hook = hooks[0]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self._fd_hook.masking:
            return
        self._focused_iters += 1
        if self._focused_iters % self.interval == 0 and is_main_process():
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self._snapshot = MaskSnapshot(model, self._fd_hook.driven_modules[0][1], self.num_samples)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._snapshot is not None:
            name = self._fd_hook.driven_modules[0][0]
            title = f'FocusedDropout at {name}, iteration {runner.iter + 1}'
            runner.visualizer.add_image('fd_mask', self._snapshot.render(title), step=runner.iter + 1)
            self._snapshot.remove()
            self._snapshot = None
