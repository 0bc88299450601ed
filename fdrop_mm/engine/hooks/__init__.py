"""mmengine hooks (root HOOKS): FocusedDropoutHook drives FocusedDropout; the pictures are their own hook."""
from .focused_dropout_hook import FocusedDropoutHook
from .stop_on_request_hook import StopOnRequestHook
from .visualization_hook import FocusedDropoutVisualizationHook

__all__ = ['FocusedDropoutHook', 'FocusedDropoutVisualizationHook', 'StopOnRequestHook']
