# resnet56/fd-wd-x8, Fig. 6c (4e-03 on focused steps (x8), ResNet56): the base config with this
# method (§5). Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py;
# change it there and rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook', weight_decay_multiplier=8.0)]
