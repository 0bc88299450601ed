# densenet-bc100-k12/fd, Table 2 (FocusedDropout, DenseNet): the base config with this method (§5).
# Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there
# and rerun the tool.
_base_ = '../densenet-bc100-k12_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='FocusedDropout'), after_stages=(1, ))))
custom_hooks = [dict(type='FocusedDropoutHook')]
