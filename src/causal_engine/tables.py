"""Users' tables: load, validate and type a CSV or Parquet file once, for all three systems.

Every system that reads a user's data comes through here, so a bad file fails the same way
everywhere: early, before any model is built, with a message that names the file, the column,
the row and the fix. Nothing is dropped or coerced silently.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from causal_engine.errors import UserError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}
PARQUET_SUFFIXES = {".parquet", ".pq"}
_OTHER_DELIMITERS = (";", "\t", "|")


class TableError(UserError):
    """A user's table or graph file cannot be used as given; the message says why and how to fix it."""


def _check_file(path: str | Path | None, name: str) -> Path:
    if path is None or str(path) in ("", "???"):
        raise TableError(f"{name} is not set: give the file, e.g. `{name}=/path/to/data.csv`.")
    file = Path(path).expanduser()
    if not file.exists():
        raise TableError(
            f"{name}: file not found: {file}. Check the path (relative paths are resolved "
            f"from the directory you ran the command in)."
        )
    if file.is_dir():
        raise TableError(f"{name}: {file} is a directory; give a CSV or Parquet file.")
    if file.stat().st_size == 0:
        raise TableError(f"{name}: {file} is empty (0 bytes); it needs a header row and data rows.")
    return file


def _csv_header(file: Path, delimiter: str) -> list[str]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])


def _read(file: Path, name: str) -> pd.DataFrame:
    suffix = file.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        header = list(pq.read_schema(file).names)
        _check_header(header, file, name)
        return pd.read_parquet(file)
    if suffix not in CSV_SUFFIXES:
        raise TableError(
            f"{name}: {file} has suffix '{suffix}'; supported are "
            f"{', '.join(sorted([*CSV_SUFFIXES, *PARQUET_SUFFIXES]))}."
        )
    delimiter = CSV_SUFFIXES[suffix]
    header = _csv_header(file, delimiter)
    if len(header) == 1:
        for other in _OTHER_DELIMITERS:
            if other != delimiter and other in header[0]:
                raise TableError(
                    f"{name}: {file} looks delimited by {other!r}, not {delimiter!r} "
                    f"(its header is one column: {header[0][:60]!r}). Save it comma-separated "
                    f"(.csv) or tab-separated (.tsv)."
                )
    _check_header(header, file, name)
    # Everything is read as text first so that non-numeric cells can be reported by row, not coerced.
    return pd.read_csv(file, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def _check_header(header: list[str], file: Path, name: str) -> None:
    if not header or all(not h.strip() for h in header):
        raise TableError(f"{name}: {file} has no header row; the first line must name the columns.")
    blank = [i + 1 for i, h in enumerate(header) if not str(h).strip()]
    if blank:
        raise TableError(f"{name}: {file} has an unnamed column at position(s) {blank}; name every column.")
    seen: set[str] = set()
    duplicates = sorted({h for h in header if h in seen or seen.add(h)})
    if duplicates:
        raise TableError(
            f"{name}: {file} has duplicate column names {duplicates}; rename them so each column is unique."
        )


def _numeric(frame: pd.DataFrame, column: str, file: Path, name: str) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype(float)
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.astype("float64")
        bad = values.isna().to_numpy()
    else:
        text = raw.astype(str).str.strip()
        lowered = text.str.lower()
        empty = (text == "") | lowered.isin(["nan", "na", "null", "none"])
        boolean = lowered.isin(["true", "false"]).any()  # True/False as pandas and R write a bool column: 1/0
        if boolean:
            values, expected = lowered.map({"true": 1.0, "false": 0.0}).astype("float64"), "True or False"
        else:
            values, expected = pd.to_numeric(text, errors="coerce").astype("float64"), "a number"
        nonnumeric = values.isna() & ~empty
        if nonnumeric.any():
            row = int(np.flatnonzero(nonnumeric.to_numpy())[0])
            raise TableError(
                f"{name}: {file}, column '{column}', row {row + 1} (line {row + 2} of the file): "
                f"value {text.iloc[row]!r} is not {expected}. Fix or remove that row, or encode the "
                f"column numerically."
            )
        bad = empty.to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"{name}: {file}, column '{column}', row {row + 1} (line {row + 2} of the file): missing "
            f"value (NaN or empty); {int(bad.sum())} such row(s) in that column. Fill or remove them "
            f"first: nothing is dropped silently."
        )
    infinite = ~np.isfinite(values.to_numpy())
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise TableError(
            f"{name}: {file}, column '{column}', row {row + 1} (line {row + 2} of the file): value "
            f"is infinite; replace it with a finite number."
        )
    return values


def load_table(
    path: str | Path | None,
    *,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] = (),
    min_rows: int = 1,
    name: str = "data.path",
) -> pd.DataFrame:
    """Load and validate a user's table.

    Args:
        path: CSV (comma), TSV (tab) or Parquet file.
        columns: columns to keep, in this order (all columns when None). Unknown names are an error.
        text_columns: columns kept as text (e.g. a regime column); empty cells become "".
            Every other kept column must be numeric, finite and complete.
        min_rows: fewest data rows accepted.
        name: the config key the path came from, used in error messages.

    Returns:
        A DataFrame with the kept columns; numeric ones as float64, text ones as str.
    """
    file = _check_file(path, name)
    frame = _read(file, name)
    if len(frame) == 0:
        raise TableError(f"{name}: {file} has a header but no data rows.")
    if len(frame) < min_rows:
        raise TableError(f"{name}: {file} has {len(frame)} data rows; at least {min_rows} are needed.")
    wanted = list(frame.columns) if columns is None else list(columns)
    unknown = [c for c in [*wanted, *text_columns] if c not in frame.columns]
    if unknown:
        raise TableError(f"{name}: {file} has no column(s) {unknown}; available: {list(frame.columns)}.")
    out = {}
    for column in wanted:
        if column in text_columns:
            out[column] = frame[column].fillna("").astype(str).str.strip()
        else:
            out[column] = _numeric(frame, column, file, name)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def load_graph(
    path: str | Path | None,
    columns: Sequence[str],
    *,
    require_all: bool = False,
    name: str = "data.graph_path",
) -> np.ndarray:
    """Read an edge list CSV (columns `source,target`) into an adjacency over `columns`.

    A row with an empty target declares an isolated variable. adjacency[i, j] = 1 iff columns[i] -> columns[j].
    Unknown variables, self-loops and cycles are errors; with `require_all`, so is a column the graph never names.
    """
    frame = _edge_frame(path, name)
    index = {c: i for i, c in enumerate(columns)}
    named = set(frame["source"]) | (set(frame["target"]) - {""})
    unknown = sorted(named - set(index))
    if unknown:
        raise TableError(
            f"{name}: the graph names variable(s) {unknown} that are not columns of the data "
            f"(columns: {list(columns)})."
        )
    adjacency = np.zeros((len(columns), len(columns)), dtype=np.float64)
    graph = nx.DiGraph()
    graph.add_nodes_from(columns)
    for row, (source, target) in enumerate(zip(frame["source"], frame["target"], strict=True)):
        if target == "":
            continue
        if source == target:
            raise TableError(f"{name}: row {row + 1} is a self-loop {source} -> {target}; remove it.")
        adjacency[index[source], index[target]] = 1.0
        graph.add_edge(source, target)
    if not nx.is_directed_acyclic_graph(graph):
        edges = nx.find_cycle(graph)
        cycle = " -> ".join([u for u, _ in edges] + [edges[0][0]])
        raise TableError(f"{name}: the graph has a cycle ({cycle}); a causal graph must be acyclic.")
    if require_all:
        missing = [c for c in columns if c not in named]
        if missing:
            raise TableError(
                f"{name}: column(s) {missing} of the data are missing from the graph; add their "
                f"edges, or a row '<name>,' (empty target) for a variable with no edges."
            )
    return adjacency


def regime_targets(regimes: Sequence[str], names: Sequence[str], column: str = "data.regime_column") -> np.ndarray:
    """targets [N, D] bool from a regime column: which variables a hard intervention set in each row.

    The one grammar of a regime column, for every task: an empty cell is an observational row; otherwise the
    cell names the intervened variable, or several joined by '+' (`x1+x3`). The values the intervention set
    are the row's own values of those variables.
    """
    names = list(names)
    targets = np.zeros((len(regimes), len(names)), dtype=bool)  # [N, D]
    for row, text in enumerate(regimes):
        for variable in filter(None, (v.strip() for v in str(text).split("+"))):
            if variable not in names:
                raise TableError(
                    f"data.regime_column '{column}', row {row + 1}: {variable!r} is not a variable of the data "
                    f"(leave the cell empty for an observational row; join several targets with '+'); "
                    f"variables: {list(names)}"
                )
            targets[row, names.index(variable)] = True
    return targets


def _edge_frame(path: str | Path | None, name: str) -> pd.DataFrame:
    file = _check_file(path, name)
    frame = _read(file, name)
    missing = [c for c in ("source", "target") if c not in frame.columns]
    if missing:
        raise TableError(
            f"{name}: {file} needs columns 'source' and 'target' (one edge per row); it has {list(frame.columns)}."
        )
    frame = frame[["source", "target"]].fillna("").astype(str).apply(lambda s: s.str.strip())
    if (frame["source"] == "").any():
        row = int(np.flatnonzero((frame["source"] == "").to_numpy())[0])
        raise TableError(f"{name}: {file}, row {row + 1}: empty 'source'.")
    return frame


@dataclass
class TableSource:
    """The `data=table` config node: where a user's table is and which columns each system uses."""

    path: str
    regime_column: str | None = None
    graph_path: str | None = None
    treatment: str | None = None
    outcome: str | None = None
    covariates: Sequence[str] | None = None

    def load(
        self,
        columns: Sequence[str] | None = None,
        *,
        text_columns: Sequence[str] = (),
        min_rows: int = 1,
    ) -> pd.DataFrame:
        """The validated table (see `load_table`)."""
        return load_table(self.path, columns=columns, text_columns=text_columns, min_rows=min_rows)

    def columns(self) -> list[str]:
        """The table's column names, as its header has them (no values checked): for messages that offer them."""
        return list(_read(_check_file(self.path, "data.path"), "data.path").columns)

    def graph(self, columns: Sequence[str], *, require_all: bool = False) -> np.ndarray:
        """The adjacency of `graph_path` over `columns`; an error when no graph was given."""
        if self.graph_path is None:
            raise TableError(
                "data.graph_path is not set: give an edge list CSV with columns source,target, "
                "e.g. `data.graph_path=edges.csv`."
            )
        return load_graph(self.graph_path, columns, require_all=require_all)
