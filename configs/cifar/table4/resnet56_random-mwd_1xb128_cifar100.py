# resnet56/random-mwd, Table 4 (+Randomly MWD, ResNet56): the base config with this method (§5).
# Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there
# and rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

custom_hooks = [dict(type='FocusedDropoutHook', mode='weight_decay_only')]
