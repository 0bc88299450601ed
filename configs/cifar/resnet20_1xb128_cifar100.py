# ResNet-20 on CIFAR-100: paper Table 2's baseline row. tools/run_sweep.py
# adds the other rows' regulariser to this config (README: the classification tables).
_base_ = './_base_/cifar100.py'

model = dict(backbone=dict(type='CifarResNet', depth=20), head=dict(in_channels=64))
