# resnet56/dropblock, Table 2 (DropBlock, ResNet56): the base config with this method (§5). Written
# by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there and
# rerun the tool.
_base_ = '../resnet56_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='DropBlock2d', drop_prob=0.1, block_size=5), after_stages=(0, 1))))
