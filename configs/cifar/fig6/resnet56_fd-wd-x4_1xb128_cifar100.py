# resnet56/fd-wd-x4, Fig. 6c (2e-03 on focused steps (x4), ResNet56): the base config with this
# method (§5). Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py;
# change it there and rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook', weight_decay_multiplier=4.0)]
