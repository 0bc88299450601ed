# DenseNet-BC-100 (growth rate 12) on CIFAR-100: paper Table 2's baseline row. The other rows'
# configs, in table2/, inherit it and add their regulariser (docs/classification.md).
_base_ = './_base_/cifar100.py'

model = dict(backbone=dict(type='CifarDenseNet', depth=100, growth_rate=12),
             head=dict(in_channels=342))
