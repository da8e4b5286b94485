"""Users' tables: every malformed file fails early with the file, column, row and fix in the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_engine.tables import TableError, TableSource, load_graph, load_table, regime_targets


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_csv_is_typed(tmp_path):
    frame = load_table(write(tmp_path, "a,b,regime\n1,2.5,\n3,4,a\n"), text_columns=("regime",))
    assert frame["a"].dtype == np.float64 and frame["b"].tolist() == [2.5, 4.0]
    assert frame["regime"].tolist() == ["", "a"]


def test_parquet_and_tsv_are_read(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0], "y": [3, 4]}).to_parquet(tmp_path / "d.parquet")
    assert load_table(tmp_path / "d.parquet")["y"].tolist() == [3.0, 4.0]
    assert load_table(write(tmp_path, "x\ty\n1\t2\n", "d.tsv"))["y"].tolist() == [2.0]


def test_a_boolean_column_reads_as_one_and_zero_as_it_does_from_parquet(tmp_path):
    """pandas writes a boolean column as True/False and R as TRUE/FALSE; the same table as Parquet is typed bool."""
    frame = load_table(write(tmp_path, "t,y\nTrue,1\nFALSE,2\nfalse,3\n"))
    assert frame["t"].tolist() == [1.0, 0.0, 0.0] and frame["t"].dtype == np.float64
    pd.DataFrame({"t": [True, False, False], "y": [1, 2, 3]}).to_parquet(tmp_path / "d.parquet")
    assert load_table(tmp_path / "d.parquet")["t"].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(TableError, match=r"column 't', row 2 .*missing value"):
        load_table(write(tmp_path, "t,y\nTrue,1\n,2\n"))
    with pytest.raises(TableError, match=r"column 't', row 2 .*value 'yes' is not True or False"):
        load_table(write(tmp_path, "t,y\nTrue,1\nyes,2\n"))  # only the two words, never a guess at others


def test_column_selection_keeps_order(tmp_path):
    frame = load_table(write(tmp_path, "a,b,c\n1,2,3\n"), columns=["c", "a"])
    assert list(frame.columns) == ["c", "a"]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, r"is empty \(0 bytes\)"),
        ("a,b\n", {}, "has a header but no data rows"),
        ("a,b\n1,2\n", {"min_rows": 10}, "has 1 data rows; at least 10 are needed"),
        ("a,b\n1,2\n", {"columns": ["a", "z"]}, r"no column\(s\) \['z'\]; available: \['a', 'b'\]"),
        ("a,b\n1,2\n3,x\n", {}, r"column 'b', row 2 \(line 3 of the file\): value 'x' is not a number"),
        ("a,b\n1,2\n3,\n", {}, r"column 'b', row 2 \(line 3 of the file\): missing value"),
        ("a,b\n1,NaN\n", {}, r"column 'b', row 1 .*missing value"),
        ("a,b\n1,inf\n", {}, r"column 'b', row 1 .*infinite"),
        ("a,a\n1,2\n", {}, r"duplicate column names \['a'\]"),
        ("a;b;c\n1;2;3\n", {}, r"looks delimited by ';'"),
        ("a,,c\n1,2,3\n", {}, "unnamed column at position"),
    ],
)
def test_malformed_tables_are_rejected(tmp_path, text, kwargs, message):
    with pytest.raises(TableError, match=message):
        load_table(write(tmp_path, text), **kwargs)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(TableError, match="file not found"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(TableError, match="suffix '.xlsx'"):
        load_table(write(tmp_path, "a\n1\n", "d.xlsx"))
    with pytest.raises(TableError, match="data.path is not set"):
        load_table(None)


def test_graph_is_read_into_adjacency(tmp_path):
    adjacency = load_graph(
        write(tmp_path, "source,target\na,b\nb,c\nd,\n", "g.csv"), ["a", "b", "c", "d"], require_all=True
    )
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 2] = 1
    assert np.array_equal(adjacency, expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source,target\na,b\nb,c\nc,a\n", r"cycle \(.* -> .* -> .* -> .*\)"),
        ("source,target\na,q\n", r"names variable\(s\) \['q'\]"),
        ("source,target\na,a\n", "self-loop"),
        ("from,to\na,b\n", "needs columns 'source' and 'target'"),
        ("source,target\na,b\n", r"column\(s\) \['c'\] of the data are missing from the graph"),
    ],
)
def test_bad_graphs_are_rejected(tmp_path, text, message):
    with pytest.raises(TableError, match=message):
        load_graph(write(tmp_path, text, "g.csv"), ["a", "b", "c"], require_all=True)


def test_table_source_needs_a_graph_path(tmp_path):
    source = TableSource(path=str(write(tmp_path, "a,b\n1,2\n")))
    assert source.load().shape == (1, 2)
    with pytest.raises(TableError, match="data.graph_path is not set"):
        source.graph(["a", "b"])


def test_regime_column_marks_one_or_several_targets_per_row():
    targets = regime_targets(["", "a", "a+c", " b + c ", ""], ["a", "b", "c"], "regime")
    assert targets.tolist() == [
        [False, False, False],
        [True, False, False],
        [True, False, True],
        [False, True, True],
        [False, False, False],
    ]


def test_regime_column_naming_an_unknown_variable_gives_the_row():
    with pytest.raises(TableError, match=r"data.regime_column 'regime', row 2: 'd' is not a variable"):
        regime_targets(["", "a+d"], ["a", "b"], "regime")
