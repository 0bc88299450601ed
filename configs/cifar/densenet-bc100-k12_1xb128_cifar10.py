# DenseNet-BC-100 (growth rate 12) on CIFAR-10: paper Table 1's baseline row. The other rows'
# configs, in table1/, inherit it and add their regulariser (docs/classification.md).
_base_ = './_base_/cifar10.py'

model = dict(backbone=dict(type='CifarDenseNet', depth=100, growth_rate=12),
             head=dict(in_channels=342))
