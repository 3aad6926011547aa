"""gan.tables.markdown_table: the exact Markdown of a table."""

from __future__ import annotations

import pytest

from gan.tables import markdown_table


def test_columns_are_left_aligned_without_numbers_from():
    assert markdown_table(["run", "score"], [["a", "1.5"], ["b", "2.0"]]) == (
        "| run | score |\n| --- | --- |\n| a | 1.5 |\n| b | 2.0 |"
    )


def test_columns_from_numbers_from_on_are_right_aligned():
    table = markdown_table(["run", "T", "FD", "KL"], [["a", "none", "1.22", "0.0060"]], 2)
    assert table.splitlines()[1] == "| --- | --- | ---: | ---: |"
    every = markdown_table(["seed", "accuracy"], [[0, 0.98]], numbers_from=0)
    assert every == "| seed | accuracy |\n| ---: | ---: |\n| 0 | 0.98 |"


def test_cells_are_strings_of_anything_and_empty_cells_stay_cells():
    table = markdown_table(["", 0, 1], [["total", 10, None], ["rest", "", "x"]], numbers_from=1)
    assert table == ("|  | 0 | 1 |\n| --- | ---: | ---: |\n| total | 10 | None |\n| rest |  | x |")


def test_a_table_without_rows_is_its_header_and_separator():
    assert markdown_table(["a", "b"], []) == "| a | b |\n| --- | --- |"


def test_a_row_of_another_length_than_the_header_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"rows\[1\] has 3 cells, the header 2"):
        markdown_table(["a", "b"], [["1", "2"], ["1", "2", "3"]])
