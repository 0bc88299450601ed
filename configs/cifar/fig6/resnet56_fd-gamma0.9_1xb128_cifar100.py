# resnet56/fd-gamma0.9, Fig. 6b (γ = 0.9, ResNet56): the base config with this method (§5). Written
# by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there and
# rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout', gamma_range=(0.9, 0.9)), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook', gamma_range=(0.9, 0.9))]
