"""The results writer that the pipeline (``results.md`` / ``.json``) and the sweeps
(``table<key>.md`` / ``.csv``) share: mean ± sample std as the paper's tables print it, markdown
tables, and a table written with its machine-readable rows beside it."""
import csv
import json
import statistics
from pathlib import Path
from typing import Optional, Sequence


def mean_std(values):
    """(mean, sample standard deviation or None for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def format_estimate(mean: Optional[float], std: Optional[float]) -> str:
    """``mean ± std`` with two decimals (the paper's tables), the mean alone without a std, '–'
    without a mean."""
    if mean is None:
        return '–'
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def format_mean_std(values) -> str:
    """Mean ± sample std of ``values`` (:func:`format_estimate`), '–' for none."""
    return format_estimate(*mean_std(values)) if values else '–'


def format_cell(values: Sequence[Optional[float]], n: int) -> str:
    """:func:`format_mean_std` of the values that are not None, with their count where it is not
    the row's ``n``."""
    values = [value for value in values if value is not None]
    count = f' (n={len(values)})' if values and len(values) != n else ''
    return format_mean_std(values) + count


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list:
    """The lines of a markdown table (an empty cell as ``| |``)."""
    def line(cells):
        return '|' + '|'.join(f' {cell} ' if cell else ' ' for cell in cells) + '|'
    return [line(header), '|' + '---|' * len(header), *map(line, rows)]


def write_table(work_dir: Path, stem: str, text: str, json_data: Optional[dict] = None,
                  csv_rows: Optional[Sequence[dict]] = None) -> str:
    """``work_dir/<stem>.md`` (``text``) beside ``<stem>.json`` (``json_data``) and/or
    ``<stem>.csv`` (``csv_rows``, one row a dict); returns ``text``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / f'{stem}.md').write_text(text)
    if json_data is not None:
        (work_dir / f'{stem}.json').write_text(json.dumps(json_data, indent=2))
    if csv_rows is not None:
        with open(work_dir / f'{stem}.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
            writer.writeheader()
            writer.writerows(csv_rows)
    return text
