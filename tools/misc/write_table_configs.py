"""Write the committed config of every cell of the paper's Tables 1-4 and Fig. 6 (§5.1-5.2)
that is not a base config: configs/cifar/{table1,table2,table4,fig6}/ and
configs/tinyimagenet/table3/, from fdrop_mm.experiments.tables.

    python tools/misc/write_table_configs.py
"""
import argparse

from fdrop_mm.cli import quiet_known_warnings
from fdrop_mm.experiments.tables import write_cell_configs


def main(argv=None):
    quiet_known_warnings()
    argparse.ArgumentParser(description=__doc__.split('\n\n')[0]).parse_args(argv)
    for path in write_cell_configs():
        print(f'wrote {path}')


if __name__ == '__main__':
    main()
