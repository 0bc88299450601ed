# ResNet-110 on CIFAR-10: paper Table 1's baseline row. The other rows' configs, in table1/, inherit
# it and add their regulariser (docs/classification.md).
_base_ = './_base_/cifar10.py'

model = dict(backbone=dict(type='CifarResNet', depth=110), head=dict(in_channels=64))
