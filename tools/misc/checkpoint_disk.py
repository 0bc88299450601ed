"""The disk each stage's checkpoints take at full scale, computed from the configs (see
fdrop_mm.experiments.disk): printed, or written into docs/checkpoints.md's disk section.

    python tools/misc/checkpoint_disk.py --write docs/checkpoints.md
"""
import argparse
from pathlib import Path

from fdrop_mm.cli import quiet_known_warnings
from fdrop_mm.experiments.disk import write_disk_section


def main(argv=None):
    quiet_known_warnings()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--write', type=Path, metavar='DOC',
                        help='also put it in place of the disk section of DOC (between its marker lines)')
    write_disk_section(parser.parse_args(argv).write)


if __name__ == '__main__':
    main()
