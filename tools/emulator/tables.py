"""Reading and writing the tabular files BES jobs consume and produce (CSV/TSV with a header row)."""

from __future__ import annotations

import csv
import io

from tools.emulator.learner import DataError

DATASET_EXTENSIONS = (".csv", ".tsv", ".arff")


def read_table(data: bytes, name: str) -> tuple[list[str], dict[str, list[str]]]:
    """Parse a dataset into (header, columns); errors name the line and the problem."""
    if name.lower().endswith(".arff"):
        raise DataError(f"{name}: ARFF input is not supported by this web service; use CSV or TSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{name}, line {line}: the file is not UTF-8 text") from None
    delimiter = "\t" if name.lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{name}: the file is empty (a header row is required)") from None
    if len(set(header)) != len(header):
        raise DataError(f"{name}, line 1: duplicate column names in the header")
    columns: dict[str, list[str]] = {h: [] for h in header}
    lists = [columns[h] for h in header]
    width = len(header)
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise DataError(f"{name}, line {reader.line_num}: {len(row)} fields, the header has {width}")
            for target, value in zip(lists, row, strict=True):
                target.append(value)
    except csv.Error as exc:
        raise DataError(f"{name}, line {reader.line_num}: {exc}") from None
    return header, columns


def write_table(header: list[str], rows: list[list[str]], name: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if name.lower().endswith(".tsv") else ",", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")
