"""Streamed CSV validation: each check, line numbers across chunk boundaries, bounded chunks."""

from __future__ import annotations

import pytest

from shared.settings import ADULT_NUMERIC
from shared.validation import DataRejected, DataSpec, validate_csv
from tools.emulator.census import csv_text

SPEC = DataSpec(required_columns=["age", "income"], numeric_columns=ADULT_NUMERIC.split(","),
                label_column="income", min_rows=5)


def chunked(text: str | bytes, size: int = 7):
    data = text.encode() if isinstance(text, str) else text
    return (data[i:i + size] for i in range(0, len(data), size))


def test_valid_census_in_small_chunks():
    text = csv_text(300, seed=1)
    report = validate_csv(chunked(text, 13), SPEC)
    assert report.rows == 300 and set(report.label_counts) == {">50K", "<=50K"}
    assert report.bytes == len(text.encode()) and report.first_row["age"]


@pytest.mark.parametrize(("text", "code", "line"), [
    ("", "Empty", None),
    ("age,workclass\n1,a\n", "MissingColumns", 1),
    ("age,income,income\n", "DuplicateColumns", 1),
    ("age,income\n1,a\n2\n", "RaggedRow", 3),
    ("age,income\n1,a\nold,b\n", "NotNumeric", 3),
    ("age,income\n1,a\n2,\n", "MissingLabel", 3),
    ("age,income\n" + "1,a\n" * 6, "NotTwoClasses", None),
    ("age,income\n1,a\n2,b\n", "TooFewRows", None),
    ('age,income\n1,"a\n', "MalformedCsv", None),
])
def test_each_check(text, code, line):
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(text), SPEC)
    assert info.value.code == code
    if line is not None:
        assert info.value.line == line


def test_not_utf8_names_the_line_even_across_chunks():
    data = b"age,income\n1,a\n2,b\n3,\xff\xfe\n"
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(data, 5), SPEC)
    assert info.value.code == "NotUtf8" and info.value.line == 4


def test_bom_and_crlf_and_multibyte_split_across_chunks():
    text = "\ufeffage,income\r\n" + "".join(f"{i},é{i % 2}\r\n" for i in range(10))
    report = validate_csv(chunked(text.encode(), 3), SPEC)
    assert report.rows == 10 and report.columns == ["age", "income"]


def test_missing_numbers_are_allowed():
    text = "age,income\n,a\n?,b\n1,a\n2,b\n3,a\n"
    assert validate_csv(chunked(text), SPEC).rows == 5


def test_labels_outside_the_experiments_classes_are_rejected_naming_the_column_and_line():
    spec = DataSpec(["age", "income"], ["age"], "income", min_rows=1, label_values=[">50K", "<=50K"])
    text = "age,income\n39,>50K\n40,yes\n"
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(text), spec)
    assert (info.value.code, info.value.line) == ("UnknownLabel", 3) and "'income'" in info.value.message
    assert validate_csv(chunked("age,income\n39,>50K\n40,<=50K\n"), spec).rows == 2


def test_a_numeric_column_with_no_value_in_any_row_is_rejected_by_name():
    spec = DataSpec(["age", "fnlwgt", "income"], ["age", "fnlwgt"], "income", min_rows=1)
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked("age,fnlwgt,income\n39,?,a\n40,,b\n"), spec)
    assert info.value.code == "AllMissing" and "fnlwgt" in info.value.message and "age" not in info.value.message
