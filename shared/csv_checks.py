"""What training data must be (`DataSpec`), what validation saw (`DataReport`), and the checks of one parsed block
of rows, done on whole columns with pyarrow.compute (`BlockChecker`): numeric columns numeric and finite (empty or
'?' is missing), a label on every row, only known classes, at most MAX_LABEL_VALUES classes. The first failing row
is found in the column and named by its line in the file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import DataRejected
from shared.settings import Settings

MAX_LABEL_VALUES = 20
NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


@dataclass
class DataSpec:
    required_columns: Sequence[str]
    numeric_columns: Sequence[str]
    label_column: str
    min_rows: int = 1
    label_values: Sequence[str] = ()  # the classes the training experiment knows (empty: any two)
    max_line_bytes: int = 1024 * 1024

    @classmethod
    def from_settings(cls, s: Settings) -> DataSpec:
        return cls(s.required_columns, s.numeric_columns, s.label_column, s.min_rows, s.label_values,
                   s.max_line_bytes)


@dataclass
class DataReport:
    rows: int = 0
    bytes: int = 0
    columns: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    first_row: dict[str, str] = field(default_factory=dict)


class _Lines:
    """The file line of each row of a block: consecutive from the block's first line, unless blank lines were
    taken out (then the kept rows' lines)."""

    def __init__(self, kept: Any, first_line: int) -> None:
        self.kept, self.first_line = kept, first_line

    def line(self, index: int) -> int:
        return int(self.kept[index].as_py()) if self.kept is not None else self.first_line + index


class BlockChecker:
    """Checks blocks of rows in file order: pyarrow tables of the numeric and label columns (positional names
    c<i>), strings, with empty and '?' values read as null."""

    def __init__(self, header: list[str], spec: DataSpec, first_row: dict[str, str]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.pa, self.pc, self.invalid = pa, pc, pa.ArrowInvalid
        self.header, self.spec = header, spec
        numeric = set(spec.numeric_columns)
        self.label_at = header.index(spec.label_column)
        self.columns = sorted({i for i, name in enumerate(header) if name in numeric} | {self.label_at})
        self.numeric = [(f"c{i}", header[i]) for i in self.columns if header[i] in numeric]
        self.seen_numbers = dict.fromkeys((name for _, name in self.numeric), 0)
        self.known = pa.array(sorted(set(spec.label_values)), pa.string()) if spec.label_values else None
        self.counts: dict[str, int] = {}
        self.rows = 0
        self.first_row = first_row

    def check(self, batch: Any, first_line: int) -> None:
        """A block of rows (a Table or RecordBatch) whose first row is line `first_line` of the file."""
        pc = self.pc
        if batch.num_rows == 0:
            return
        if hasattr(batch, "combine_chunks"):  # a Table (parsed in parallel pieces): one batch of plain arrays
            batch = batch.combine_chunks().to_batches()[0]
        # A blank line parses as a row of nulls: skipped, as blank lines are (and a row of nothing but '?').
        blank = pc.is_null(batch.column(0))
        for i in range(1, batch.num_columns):
            blank = pc.and_(blank, pc.is_null(batch.column(i)))
        lines = None
        if blank.true_count:
            keep = pc.invert(blank)
            lines = pc.add(pc.indices_nonzero(keep), first_line)  # the file line of each kept row
            batch = batch.filter(keep)
            if batch.num_rows == 0:
                return
        where = _Lines(lines, first_line)
        for column, name in self.numeric:
            self._numbers(batch.column(column), name, where)
        self._labels(batch.column(f"c{self.label_at}"), where)
        self.rows += batch.num_rows

    def _first(self, mask: Any, where: _Lines) -> tuple[int, int] | None:
        """(index, file line) of the first True in `mask`, or None."""
        if not mask.true_count:
            return None
        index = self.pc.index(mask, True).as_py()
        return index, where.line(index)

    def _numbers(self, column: Any, name: str, where: _Lines) -> None:
        """Numbers: the column cast in one go; only when that fails, the first value that is not a number is
        looked for (spaces around a number are allowed; the cast does not take them)."""
        pc, pa = self.pc, self.pa
        values = column
        try:
            numbers = pc.cast(column, pa.float64())
        except self.invalid:
            values = pc.utf8_trim_whitespace(column)
            values = pc.if_else(pc.or_(pc.equal(values, ""), pc.equal(values, "?")), None, values)
            bad = pc.invert(pc.fill_null(pc.match_substring_regex(values, NUMBER), True))
            found = self._first(bad, where)
            if found is not None:
                raise DataRejected("NotNumeric", f"column '{name}' holds '{values[found[0]].as_py()[:40]}', not a "
                                   f"number", found[1]) from None
            numbers = pc.cast(values, pa.float64())
        found = self._first(pc.invert(pc.fill_null(pc.is_finite(numbers), True)), where)
        if found is not None:
            raise DataRejected("NotNumeric", f"column '{name}' holds '{values[found[0]].as_py()[:40]}'", found[1])
        self.seen_numbers[name] += len(numbers) - numbers.null_count

    def _labels(self, column: Any, where: _Lines) -> None:
        pc, spec = self.pc, self.spec
        labels = pc.utf8_trim_whitespace(column)
        found = self._first(pc.fill_null(pc.equal(labels, ""), True), where)
        if found is not None:
            raise DataRejected("MissingLabel", f"the label column '{spec.label_column}' is empty", found[1])
        if self.known is not None:
            found = self._first(pc.invert(pc.is_in(labels, value_set=self.known)), where)
            if found is not None:
                raise DataRejected("UnknownLabel", f"the label column '{spec.label_column}' holds "
                                   f"'{labels[found[0]].as_py()[:40]}'; the training experiment knows only "
                                   f"{', '.join(sorted(spec.label_values))}", found[1])
        for item in pc.value_counts(labels).to_pylist():  # in order of first appearance
            value, count = str(item["values"]), int(item["counts"])
            if value not in self.counts and len(self.counts) >= MAX_LABEL_VALUES:
                at = self._first(pc.equal(labels, value), where)
                raise DataRejected("TooManyClasses", f"the label column '{spec.label_column}' has more than "
                                                     f"{MAX_LABEL_VALUES} distinct values", at[1] if at else None)
            self.counts[value] = self.counts.get(value, 0) + count

    def report(self, size: int) -> DataReport:
        spec = self.spec
        empty = [name for name, count in self.seen_numbers.items() if count == 0]
        if self.rows and empty:
            raise DataRejected("AllMissing", f"numeric column(s) {', '.join(empty)} have no value in any row")
        if self.rows < spec.min_rows:
            raise DataRejected("TooFewRows", f"{self.rows} data rows; at least {spec.min_rows} are required")
        if len(self.counts) != 2:
            raise DataRejected("NotTwoClasses", f"the label column '{spec.label_column}' has {len(self.counts)} "
                                                f"class(es) ({', '.join(sorted(self.counts)[:5])}); two are required")
        return DataReport(rows=self.rows, bytes=size, columns=list(self.header), label_counts=dict(self.counts),
                          first_row=self.first_row)
