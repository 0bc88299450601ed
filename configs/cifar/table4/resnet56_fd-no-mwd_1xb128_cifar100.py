# resnet56/fd-no-mwd, Table 4 (+FocusedDropout without MWD, ResNet56); Fig. 6c (5e-04 on focused
# steps (x1), ResNet56): the base config with this method (§5). Written by
# tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there and rerun
# the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook', weight_decay_multiplier=1.0)]
