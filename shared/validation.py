"""Training-data checks, streamed: the CSV is decoded and parsed chunk by chunk, never held whole in memory.

Checks: UTF-8 text (a BOM is fine), a header row with the required columns, every row as wide as the header,
numeric columns numeric (empty or '?' count as missing), a label on every row with exactly two classes, and a
minimum number of rows. A failure names the line and the problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from shared.errors import DataRejected

MAX_LABEL_VALUES = 20
__all__ = ["DataRejected", "DataReport", "DataSpec", "evaluation_metrics", "validate_csv"]


@dataclass
class DataSpec:
    required_columns: Sequence[str]
    numeric_columns: Sequence[str]
    label_column: str
    min_rows: int = 1
    label_values: Sequence[str] = ()  # the classes the training experiment knows (empty: any two)


@dataclass
class DataReport:
    rows: int = 0
    bytes: int = 0
    columns: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    first_row: dict[str, str] = field(default_factory=dict)


class _Lines:
    """Decode UTF-8 chunks into text lines, counting bytes and lines for error messages."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.bytes = 0
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        pending = ""
        for chunk in self._chunks:
            self.bytes += len(chunk)
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = self.lines + pending.count("\n") + chunk[: exc.start].count(b"\n") + 1
                raise DataRejected("NotUtf8", "the file is not UTF-8 text", line) from None
            if not text:
                continue
            parts = (pending + text).split("\n")
            pending = parts.pop()
            for part in parts:
                self.lines += 1
                yield part + "\n"
        try:
            pending += decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataRejected("NotUtf8", "the file ends inside a UTF-8 character", self.lines + 1) from None
        if pending:
            self.lines += 1
            yield pending


def validate_csv(chunks: Iterable[bytes], spec: DataSpec) -> DataReport:
    """Check a CSV stream against `spec`; returns what it saw, or raises DataRejected."""
    lines = _Lines(chunks)
    reader = csv.reader(iter(lines), strict=True)
    report = DataReport()
    try:
        header = next(reader, None)
        if header is None:
            raise DataRejected("Empty", "the file is empty (a header row is required)")
        header = [h.strip() for h in header]
        missing = [c for c in spec.required_columns if c not in header]
        if missing:
            raise DataRejected("MissingColumns", f"the header lacks column(s): {', '.join(missing)}", 1)
        if len(set(header)) != len(header):
            raise DataRejected("DuplicateColumns", "the header repeats a column name", 1)
        report.columns = header
        width = len(header)
        numeric = [(i, name) for i, name in enumerate(header) if name in set(spec.numeric_columns)]
        seen_numbers = dict.fromkeys((name for _, name in numeric), 0)
        known_labels = set(spec.label_values)
        label_at = header.index(spec.label_column)
        counts = report.label_counts
        rows = 0
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise DataRejected("RaggedRow", f"{len(row)} fields where the header has {width}", reader.line_num)
            for i, name in numeric:
                value = row[i].strip()
                if value and value != "?":
                    try:
                        number = float(value)
                    except ValueError:
                        raise DataRejected("NotNumeric", f"column '{name}' holds '{value[:40]}', not a number",
                                           reader.line_num) from None
                    if not math.isfinite(number):
                        raise DataRejected("NotNumeric", f"column '{name}' holds '{value[:40]}'", reader.line_num)
                    seen_numbers[name] += 1
            label = row[label_at].strip()
            if not label:
                raise DataRejected("MissingLabel", f"the label column '{spec.label_column}' is empty",
                                   reader.line_num)
            if known_labels and label not in known_labels:
                raise DataRejected("UnknownLabel", f"the label column '{spec.label_column}' holds '{label[:40]}'; "
                                   f"the training experiment knows only {', '.join(sorted(known_labels))}",
                                   reader.line_num)
            if label in counts:
                counts[label] += 1
            elif len(counts) >= MAX_LABEL_VALUES:
                raise DataRejected("TooManyClasses", f"the label column '{spec.label_column}' has more than "
                                                     f"{MAX_LABEL_VALUES} distinct values", reader.line_num)
            else:
                counts[label] = 1
            if rows == 0:
                report.first_row = dict(zip(header, row, strict=True))
            rows += 1
    except csv.Error as exc:
        raise DataRejected("MalformedCsv", str(exc), reader.line_num) from None
    report.rows = rows
    report.bytes = lines.bytes
    empty = [name for name, count in seen_numbers.items() if count == 0]
    if rows and empty:
        raise DataRejected("AllMissing", f"numeric column(s) {', '.join(empty)} have no value in any row")
    if rows < spec.min_rows:
        raise DataRejected("TooFewRows", f"{rows} data rows; at least {spec.min_rows} are required")
    if len(counts) != 2:
        raise DataRejected("NotTwoClasses", f"the label column '{spec.label_column}' has {len(counts)} class(es) "
                                            f"({', '.join(sorted(counts)[:5])}); two are required")
    return report


def evaluation_metrics(data: bytes, required: str | None = None) -> dict[str, float]:
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
    if required is not None and required not in metrics:
        raise DataRejected("BadEvaluation", f"the evaluation file has no numeric '{required}' (the gate's metric)")
    return metrics
