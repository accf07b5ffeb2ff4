"""Writing the generated files: each block's rows appended to CSV, JSON Lines and Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


class _Sink:
    """Appends each block's rows to the output files (CSV text, JSON Lines, truth Parquet)."""

    def __init__(self, out: Path) -> None:
        self.data, self.truth = out / "data", out / "truth"
        self.data.mkdir(parents=True, exist_ok=True)
        self.truth.mkdir(parents=True, exist_ok=True)
        self._csv: dict[str, pacsv.CSVWriter] = {}
        self._pq: dict[str, pq.ParquetWriter] = {}
        self._appended: set[str] = set()

    def csv(self, name: str, table: pa.Table) -> None:
        # every column as text, so blocks where a column is all empty share one schema
        table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
        if name not in self._csv:
            self._csv[name] = pacsv.CSVWriter(self.data / name, table.schema)
        self._csv[name].write_table(table)

    def parquet(self, name: str, table: pa.Table) -> None:
        if name not in self._pq:
            self._pq[name] = pq.ParquetWriter(self.truth / f"{name}.parquet", table.schema)
        else:
            table = table.cast(self._pq[name].schema)
        self._pq[name].write_table(table)

    def append_file(self, name: str, part: Path) -> None:
        mode = "ab" if name in self._appended else "wb"
        with open(self.data / name, mode) as dst, open(part, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 22)
        part.unlink()
        self._appended.add(name)

    def close(self) -> None:
        for w in self._csv.values():
            w.close()
        for p in self._pq.values():
            p.close()
