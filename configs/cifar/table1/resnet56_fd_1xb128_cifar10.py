# resnet56/fd, Table 1 (FocusedDropout, ResNet56): the base config with this method (§5). Written by
# tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there and rerun
# the tool.
_base_ = '../resnet56_1xb128_cifar10.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook')]
