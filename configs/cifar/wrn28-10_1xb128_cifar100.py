# Wide ResNet-28-10 on CIFAR-100: paper Table 2's baseline row. The other rows' configs, in table2/,
# inherit it and add their regulariser (docs/classification.md).
# Wide ResNet's schedule (§5): 200 epochs, lr x0.1 at epochs 60, 120 and 160.
_base_ = './_base_/cifar100.py'

model = dict(backbone=dict(type='CifarWideResNet', depth=28, widen_factor=10),
             head=dict(in_channels=640))
param_scheduler = dict(milestones=[60, 120, 160])
train_cfg = dict(max_epochs=200)
