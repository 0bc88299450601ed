# densenet-bc100-k12/dropout, Table 1 (Dropout, DenseNet): the base config with this method (§5).
# Written by tools/misc/write_table_configs.py from fdrop_mm/experiments/tables.py; change it there
# and rerun the tool.
_base_ = '../densenet-bc100-k12_1xb128_cifar10.py'

model = dict(backbone=dict(stage_regularizer=dict(
    cfg=dict(type='Dropout', drop_prob=0.1), after_stages=(1, ))))
