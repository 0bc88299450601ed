# resnet56/fd-p0.2, Fig. 6a (participation 0.2, ResNet56): the base config with this method (§5).
# Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there
# and rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook', participation=0.2)]
