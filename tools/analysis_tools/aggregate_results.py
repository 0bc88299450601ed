"""Gather the classification runs of tools/run_sweep.py into tables laid out like the paper's
Tables 1-4 and Fig. 6 (markdown and CSV): mean ± std over seeds of the highest validation top-1
over the whole run (§5, the paper's measure) beside the final top-1; see
fdrop_mm.experiments.aggregate.

    python tools/analysis_tools/aggregate_results.py --table 1 2 3 4 [--work-dir work_dirs/classification]

writes ``<work-dir>/table<key>.md`` and ``.csv`` for each table and prints the markdown.
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import quiet_known_warnings
from fdrop_mm.experiments.aggregate import write_tables
from fdrop_mm.experiments.tables import TABLES


def main(argv=None):
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--table', nargs='+', required=True, choices=list(TABLES))
    parser.add_argument('--work-dir', type=Path, default=Path('work_dirs/classification'),
                        help='the sweep\'s --work-dir (default work_dirs/classification)')
    args = parser.parse_args(argv)
    if not args.work_dir.is_dir():
        parser.error(f'--work-dir {args.work_dir} is not a directory')
    print(write_tables([TABLES[key] for key in args.table], args.work_dir))


if __name__ == '__main__':
    main()
