"""mmengine adapters: hooks."""
from .hooks import FocusedDropoutHook, FocusedDropoutVisualizationHook

__all__ = ['FocusedDropoutHook', 'FocusedDropoutVisualizationHook']
