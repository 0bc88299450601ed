"""mmdet evaluation adapters (imported by ``fdrop_mm`` when mmdet is installed)."""
from .voc_metric import VOCMetricPerClass

__all__ = ['VOCMetricPerClass']
