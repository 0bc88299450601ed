# resnet20/spatial-dropout, Table 1 (SpatialDropout, ResNet20): the base config with this method
# (§5). Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it
# there and rerun the tool.
_base_ = '../resnet20_1xb128_cifar10.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='SpatialDropout', p=0.1), after_stages=(1, ))))
