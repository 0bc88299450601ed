# vgg19bn/spatial-dropout, Table 2 (SpatialDropout, VggNet19): the base config with this method
# (§5). Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it
# there and rerun the tool.
_base_ = '../vgg19bn_1xb128_cifar100.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='SpatialDropout', p=0.1), after_stages=(3, ))))
