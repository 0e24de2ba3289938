"""Training-data checks, streamed: the CSV is checked and parsed block by block, never held whole in memory.

Checks: UTF-8 text (a BOM is fine), no line over the limit, a header row with the required columns, every row as
wide as the header, numeric columns numeric (empty or '?' count as missing), a label on every row with exactly two
classes, and a minimum number of rows. A failure names the line and the problem.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable

from shared.csv_checks import BlockChecker, DataReport, DataSpec
from shared.csv_stream import CheckedStream
from shared.errors import DataRejected

BLOCK_BYTES = 1024 * 1024  # parsed and checked at a time: pyarrow's working memory is a multiple of it
__all__ = ["DataRejected", "DataReport", "DataSpec", "evaluation_metrics", "validate_csv"]


def validate_csv(chunks: Iterable[bytes], spec: DataSpec) -> DataReport:
    """Check a CSV stream against `spec`; returns what it saw, or raises DataRejected naming the line.

    The bytes pass a stream that checks UTF-8, line lengths and quotes; each block of whole lines (about a download
    chunk) is parsed by pyarrow (in C, on every core) and its columns checked with pyarrow.compute. Rows are
    lines: a line break inside a quoted value is refused."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    stream = CheckedStream(chunks, spec.max_line_bytes)
    header_line = stream.header()
    if not header_line.strip():
        raise DataRejected("Empty", "the file is empty (a header row is required)")
    try:
        header = [h.strip() for h in next(csv.reader([header_line.decode("utf-8")], strict=True))]
    except csv.Error as exc:
        raise DataRejected("MalformedCsv", str(exc), 1) from None
    missing = [c for c in spec.required_columns if c not in header]
    if missing:
        raise DataRejected("MissingColumns", f"the header lacks column(s): {', '.join(missing)}", 1)
    if len(set(header)) != len(header):
        raise DataRejected("DuplicateColumns", "the header repeats a column name", 1)
    checker = BlockChecker(header, spec, _first_row(stream, header))
    names = [f"c{i}" for i in range(len(header))]  # positional: header names may be anything
    checked = [names[i] for i in checker.columns]  # only these are converted (every field is still parsed)
    options = (pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False),
               pa_csv.ConvertOptions(column_types=dict.fromkeys(checked, pa.string()), include_columns=checked,
                                     null_values=["", "?"], strings_can_be_null=True, check_utf8=False))
    for first_line, block in stream.blocks(BLOCK_BYTES):
        try:
            table = pa_csv.read_csv(pa.py_buffer(block), parse_options=options[0], convert_options=options[1],
                                    read_options=pa_csv.ReadOptions(column_names=names, block_size=len(block) + 1,
                                                                    use_threads=False))
        except pa.ArrowInvalid as exc:
            raise _parse_error(bytes(block), first_line, len(header), exc) from None
        checker.check(table, first_line)
    return checker.report(stream.bytes)


def _parse_error(block: bytes, first_line: int, width: int, exc: Exception) -> DataRejected:
    """What pyarrow refused in a block, found again line by line (the error path only) to name the line."""
    for number, row in enumerate(csv.reader(io.StringIO(block.decode("utf-8"), newline="")), start=first_line):
        if row and len(row) != width:
            return DataRejected("RaggedRow", f"{len(row)} fields where the header has {width}", number)
    return DataRejected("MalformedCsv", str(exc).splitlines()[0][:200], first_line)


def _first_row(stream: CheckedStream, header: list[str]) -> dict[str, str]:
    """The first data row, every column (the smoke row a deployment is verified with, unless one is set)."""
    line = stream.peek_line()
    try:
        row = next(csv.reader([line.decode("utf-8")]), []) if line.strip() else []
    except (csv.Error, UnicodeDecodeError):
        return {}
    return dict(zip(header, row, strict=True)) if len(row) == len(header) else {}


def evaluation_metrics(data: bytes, required: Iterable[str] = ()) -> dict[str, float]:
    """The first row of an Evaluate Model CSV as metric -> value (cells that are not numbers are left out). Raises
    DataRejected (BadEvaluation) when it has no row, is not UTF-8, or lacks a finite `required` metric - a gate
    must never pass for want of a number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataRejected("BadEvaluation", "the evaluation file is not UTF-8 text") from None
    try:
        first = next(csv.DictReader(io.StringIO(text)), None)
    except csv.Error as exc:
        raise DataRejected("BadEvaluation", f"the evaluation file is not CSV: {exc}") from None
    if first is None:
        raise DataRejected("BadEvaluation", "the evaluation file has no row of metrics")
    metrics: dict[str, float] = {}
    for key, value in first.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if key is not None and math.isfinite(number):
            metrics[key.strip()] = number
    missing = [m for m in required if m not in metrics]
    if missing:
        raise DataRejected("BadEvaluation", f"the evaluation file has no numeric {', '.join(repr(m) for m in missing)}"
                                            " (the gate's metrics)")
    return metrics
