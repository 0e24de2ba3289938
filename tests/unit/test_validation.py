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


def test_a_line_over_the_limit_is_rejected_with_its_line_number_in_any_chunking():
    spec = DataSpec(["age", "income"], ["age"], "income", min_rows=1, max_line_bytes=64)
    text = "age,income\n1,a\n2,b\n3," + "x" * 100 + "\n4,a\n"
    for size in (5, 16, 63, 64, 65, 1000):
        with pytest.raises(DataRejected) as info:
            validate_csv(chunked(text, size), spec)
        assert (info.value.code, info.value.line) == ("LineTooLong", 4), size


def test_a_file_without_a_newline_is_rejected_once_past_the_limit_without_being_read_whole():
    spec = DataSpec(["age", "income"], ["age"], "income", max_line_bytes=1024)
    read = []

    def endless():
        while True:
            read.append(1)
            yield b"y" * 256

    with pytest.raises(DataRejected) as info:
        validate_csv(endless(), spec)
    assert (info.value.code, info.value.line) == ("LineTooLong", 1)
    assert len(read) <= 8  # stopped at the limit (the whole "file" would never end)


def test_a_line_break_inside_a_quoted_value_is_refused_with_its_line():
    text = 'age,income\n1,a\n2,"b\nc"\n3,a\n'
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(text, 4), SPEC)
    assert (info.value.code, info.value.line) == ("MalformedCsv", 3)


def test_quoted_values_and_blank_lines_keep_line_numbers_exact():
    text = 'age,income\n1,"a"\n\n2,"b, with a comma"\n\n3,a\nold,b\n'
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(text, 6), SPEC)
    assert (info.value.code, info.value.line) == ("NotNumeric", 7)


def test_an_infinite_number_and_an_unknown_label_are_refused_with_their_lines():
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked("age,income\n1,a\n1e999,b\n"), SPEC)
    assert (info.value.code, info.value.line) == ("NotNumeric", 3)
    spec = DataSpec(["age", "income"], ["age"], "income", label_values=[">50K", "<=50K"])
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked("age,income\n1,>50K\n2,<=50K\n3,maybe\n"), spec)
    assert (info.value.code, info.value.line) == ("UnknownLabel", 4)


def test_line_numbers_hold_across_parse_blocks():
    text = "age,income\n" + "".join(f"{i},{'a' if i % 2 else 'b'}\n" for i in range(200)) + "x,a\n"
    with pytest.raises(DataRejected) as info:
        validate_csv(chunked(text, 33), SPEC)  # a block per chunk: ~200 blocks
    assert (info.value.code, info.value.line) == ("NotNumeric", 202)
