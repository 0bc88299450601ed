"""Dataset adapters that fail loudly: CIFAR, Tiny ImageNet-200 and ImageNet
(``fdrop_mm.datasets.classification``, mmpretrain's DATASETS) and VOC (``fdrop_mm.datasets.voc``,
mmdet's DATASETS); ``import fdrop_mm`` imports each when its package is installed."""
