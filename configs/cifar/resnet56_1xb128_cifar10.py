# ResNet-56 on CIFAR-10: paper Table 1's baseline row. tools/run_sweep.py
# adds the other rows' regulariser to this config (README: the classification tables).
_base_ = './_base_/cifar10.py'

model = dict(backbone=dict(type='CifarResNet', depth=56), head=dict(in_channels=64))
