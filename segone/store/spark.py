"""The warehouse on Apache Spark, through Ibis's PySpark backend: the same pipeline, at scale.

Every table is a directory of Parquet files under the warehouse directory, one *version* per
write, seen by Spark as a temporary view of that version. Nothing goes through Spark's own
catalogue (``saveAsTable`` leaves a managed directory behind that breaks the next session),
so a warehouse is just its directory: copy it, point a cluster at it, delete it.

Spark has no transactions. A write makes a new version beside the old one; which version is
current is recorded in ``_manifest.json``, replaced atomically when a transaction commits (or
after each write outside one). A build that fails half-way leaves the previous versions in
place, as DuckDB's rollback would; a crash leaves at most unreferenced directories.

Engine-specific quirks are kept here, as Splink keeps them in its database APIs:

* JSON columns are text in Spark. Ibis compiles ``json[key]`` to ``get_json_object``, which
  unquotes strings and so loses the difference between ``"123"`` and ``123``; here a
  key lookup keeps the value's JSON text, so ``unwrap_as("string")`` means what it means on
  DuckDB (strings only).
* The canonical schema (with its JSON columns) is kept for every table, not read back from
  Spark, which would report text.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.schema as sch
import pyarrow as pa

from segone.exceptions import StoreError
from segone.schema import TABLES, table_schema
from segone.store.base import Warehouse

MANIFEST = "_manifest.json"

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CONTEXT: dict[str, Any] = {}  # one JVM per process: its SparkContext and the master URL


#: Spark SQL settings for tiny tables (tests, demos): on a few thousand rows, compiling each
#: query to Java byte code and re-planning it adaptively cost far more than running it.
#: Never on real data: there both pay for themselves many times over.
SMALL_DATA = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
}


def spark_available() -> str | None:
    """None when pyspark and a Java runtime are here; otherwise what is missing, in words."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return 'pyspark is not installed (pip install "segone[spark]")'
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and not shutil.which("java"):
        return "no Java runtime (java on PATH or JAVA_HOME); Spark needs Java 17 or 21"
    return None


def _session(master: str, driver_memory: str, scratch: Path) -> Any:
    """A new Spark session (own temporary views) on the process's one SparkContext.

    The first call starts the JVM (7-9 s); later warehouses, even on other directories, share
    it and only get sessions of their own, so opening a warehouse is cheap.
    """
    from pyspark.sql import SparkSession

    with _LOCK:
        root = _CONTEXT.get("session")
        if root is None:
            # Python workers (JSON lookups) must run this interpreter, with its packages
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            scratch.mkdir(parents=True, exist_ok=True)
            builder = SparkSession.builder
            jar = _splink_jar()
            if jar:  # Splink's similarity functions (Jaro-Winkler, ...) for matching on Spark
                builder = builder.config("spark.jars", jar)
            root = (
                builder.master(master)
                .appName("segone")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", "2")
                .config("spark.default.parallelism", "2")
                .config("spark.driver.memory", driver_memory)
                .config("spark.sql.warehouse.dir", str(scratch / "spark-warehouse"))
                .config("spark.local.dir", str(scratch / "spark-local"))
                .config("spark.sql.session.timeZone", "UTC")
                # DuckDB's semantics: x / 0 is NULL (Spark 4's ANSI mode raises instead)
                .config("spark.sql.ansi.enabled", "false")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.adaptive.enabled", "true")
                .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")
                .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={scratch}")
                .getOrCreate()
            )
            root.sparkContext.setLogLevel("ERROR")
            _CONTEXT["session"] = root
            _CONTEXT["master"] = master
        elif _CONTEXT["master"] != master:
            raise StoreError(
                f"this process already runs Spark on {_CONTEXT['master']}; "
                f"it cannot also run on {master}"
            )
        return root.newSession()


def _splink_jar() -> str | None:
    """The jar of Splink's Spark similarity functions, shipped with Splink (None without it)."""
    try:
        from splink.internals.spark.jar_location import similarity_jar_location
    except ImportError:
        return None
    path = similarity_jar_location()
    return path if Path(path).exists() else None


def stop_spark() -> None:
    """Stop the process's Spark JVM (the next warehouse starts a new one)."""
    with _LOCK:
        root = _CONTEXT.pop("session", None)
        _CONTEXT.pop("master", None)
    if root is not None:
        root.stop()


#: unwrap op -> (Spark type, the test that the value has that JSON type; {t} is its type name)
_VARIANT_TYPES = {
    "UnwrapJSONString": ("string", "{t} = 'STRING'"),
    "UnwrapJSONInt64": ("bigint", "{t} = 'BIGINT'"),
    "UnwrapJSONFloat64": (
        "double",
        "({t} IN ('BIGINT', 'DOUBLE', 'FLOAT') OR {t} LIKE 'DECIMAL%')",
    ),
    "UnwrapJSONBoolean": ("boolean", "{t} = 'BOOLEAN'"),
}


def _backend(session: Any) -> Any:
    """Ibis's PySpark backend on ``session``, compiling with :func:`_compiler`."""
    con = ibis.pyspark.connect(session)
    con.compiler = _compiler()
    return con


def _compiler() -> Any:
    """Ibis's PySpark compiler, made to mean what DuckDB means.

    JSON is done natively, on Spark 4's VARIANT.
    Ibis compiles ``json[key]`` to ``get_json_object``, which unquotes strings (``"123"`` and
    ``123`` both become the text 123), and unwraps values with Python UDFs, which start Python
    workers for every task. Here a key lookup keeps the value's JSON text and an unwrap checks
    the value's JSON type, as DuckDB does: ``unwrap_as("string")`` gives strings only.
    """
    import sqlglot as sg
    import sqlglot.expressions as sge
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    def unwrap(name: str) -> Any:
        to, check = _VARIANT_TYPES[name]

        def visit(self: Any, op: Any, *, arg: Any) -> Any:
            v = f"try_parse_json({arg.sql(dialect='spark')})"
            test = check.format(t=f"schema_of_variant({v})")
            return sg.parse_one(
                f"CASE WHEN {test} THEN variant_get({v}, '$', '{to}') END", dialect="spark"
            )

        return visit

    unwrap_ops = {getattr(ops, n) for n in _VARIANT_TYPES}
    own_ops = unwrap_ops | {ops.LStrip, ops.RStrip}

    def trim(position: str) -> Any:
        # Ibis writes Python's whitespace as the literal ' \t\n\r\v\f', and Spark reads
        # \v and \f as the letters v and f: "fowens@x.com".strip() lost its f. Ibis's
        # lstrip/rstrip trim spaces only on Spark. Here all three trim what DuckDB trims.
        def visit(self: Any, op: Any, *, arg: Any) -> Any:
            chars = self.f.concat(
                sge.Literal.string(" "), *[self.f.char(ord(c)) for c in "\t\n\r\x0b\x0c"]
            )
            return sge.Trim(this=arg, expression=chars, position=position)

        return visit

    class Compiler(PySparkCompiler):
        SIMPLE_OPS = {k: v for k, v in PySparkCompiler.SIMPLE_OPS.items() if k not in own_ops}  # noqa: RUF012

        visit_Strip = trim("BOTH")
        visit_LStrip = trim("LEADING")
        visit_RStrip = trim("TRAILING")

        def visit_NonNullLiteral(self, op: Any, *, value: Any, dtype: Any) -> Any:
            # Spark reads 86400.0 as a DECIMAL, and then divides in decimal arithmetic; a
            # float64 literal must be a double, as on DuckDB
            if dtype.is_floating() and math.isfinite(float(value)):
                return sge.Cast(
                    this=sge.Literal.number(repr(float(value))),
                    to=sge.DataType.build("DOUBLE"),
                )
            if dtype.is_string() and ("\x0b" in value or "\x0c" in value):
                # written as \v and \f, which Spark reads as the letters v and f
                parts = re.split("([\x0b\x0c])", value)
                return self.f.concat(
                    *[
                        self.f.char(ord(p)) if p in "\x0b\x0c" else sge.Literal.string(p)
                        for p in parts
                        if p
                    ]
                )
            return super().visit_NonNullLiteral(op, value=value, dtype=dtype)

        def visit_ExtractEpochSeconds(self, op: Any, *, arg: Any) -> Any:
            # unix_timestamp drops the fraction of a second; DuckDB's epoch keeps it (a build
            # as of 23:59:59.999999 had every recency one second shorter on Spark)
            micros = self.f.unix_micros(self.cast(arg, dt.timestamp))
            million = sge.Cast(this=sge.Literal.number("1000000"), to=sge.DataType.build("DOUBLE"))
            return sge.Div(this=micros, expression=million)

        def visit_JSONGetItem(self, op: Any, *, arg: Any, index: Any) -> Any:
            fmt = "$[%s]" if op.index.dtype.is_integer() else "$.%s"
            path = self.f.format_string(fmt, index)
            return self.f.to_json(self.f.try_variant_get(self.f.try_parse_json(arg), path))

        visit_UnwrapJSONString = unwrap("UnwrapJSONString")
        visit_UnwrapJSONInt64 = unwrap("UnwrapJSONInt64")
        visit_UnwrapJSONFloat64 = unwrap("UnwrapJSONFloat64")
        visit_UnwrapJSONBoolean = unwrap("UnwrapJSONBoolean")

    return Compiler()


class SparkWarehouse(Warehouse):
    """Canonical tables as Parquet under ``path``, computed by Spark (``local[2]`` or a cluster).

    ``master`` is a Spark master URL: ``local[2]`` on one machine, ``spark://host:7077`` or
    ``yarn`` on a cluster (the warehouse directory must then be on storage every executor
    sees, e.g. HDFS or a mounted bucket). ``conf``: Spark SQL settings of this warehouse's
    session (e.g. :data:`SMALL_DATA` for tests on a few thousand rows).
    """

    # the loader's fingerprints and row hashes are DuckDB's; files load through a local DuckDB
    native_ingest = False

    def __init__(
        self,
        path: str | Path,
        *,
        master: str = "local[2]",
        driver_memory: str = "2g",
        read_only: bool = False,
        conf: Mapping[str, str] | None = None,
    ) -> None:
        why = spark_available()
        if why:
            raise StoreError(f"the Spark warehouse needs Spark: {why}")
        self.path = Path(path)
        self.read_only = read_only
        self.path.mkdir(parents=True, exist_ok=True)
        self._scratch = Path(tempfile.gettempdir()) / f"segone-spark-{os.getpid()}"
        self._session = _session(master, driver_memory, self._scratch)
        for key, value in (conf or {}).items():  # this session's SQL settings
            self._session.conf.set(key, value)
        self._con = _backend(self._session)
        self._schemas: dict[str, sch.Schema] = {}
        self._where: dict[str, Path] = {}  # table -> current version directory
        self._temp_df: dict[str, Any] = {}  # temporary tables: checkpointed DataFrames
        self._in_tx = False
        self._garbage: list[Path] = []  # old versions to delete at commit
        self._undo: dict[str, Path | None] = {}
        manifest = self.path / MANIFEST
        if manifest.exists():
            state = json.loads(manifest.read_text(encoding="utf-8"))
            for name, version in state["tables"].items():
                self._where[name] = self.path / name / version
                self._register(name, self._where[name], _schema_from_json(state["schemas"][name]))

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def backend(self) -> Any:
        return self._con

    @property
    def session(self) -> Any:
        """The Spark session (for engine-specific tools and tests, not for pipelines)."""
        return self._session

    def _register(self, name: str, where: Path, schema: sch.Schema) -> None:
        from ibis.backends.pyspark.datatypes import PySparkSchema

        # the schema is given, not inferred: no job to read the footers
        spark_schema = PySparkSchema.from_ibis(schema)
        self._session.read.schema(spark_schema).parquet(str(where)).createOrReplaceTempView(name)
        self._schemas[name] = schema

    def _dataframe(self, expr: ibis.Table) -> Any:
        try:
            self._con._run_pre_execute_hooks(expr)
            return self._session.sql(self._con.compile(expr))
        except Exception as exc:
            raise StoreError(_first_line(exc), _sql(self._con, expr)) from None

    def _write(self, name: str, df: Any, schema: sch.Schema, *, temp: bool) -> ibis.Table:
        """Make ``df`` the current contents of ``name``.

        A temporary table is checkpointed in the executors' memory (its lineage cut, which the
        iterative identity graph needs); a permanent one is written as a new Parquet version.
        """
        schema = _canonical(name, schema)
        started = time.perf_counter()
        try:
            return self._write_now(name, df, schema, temp=temp)
        finally:
            log.info(
                "%s %s in %.1fs", "staged" if temp else "wrote", name, time.perf_counter() - started
            )

    def _write_now(self, name: str, df: Any, schema: sch.Schema, *, temp: bool) -> ibis.Table:
        if temp:
            try:
                df = df.localCheckpoint(eager=True)
            except Exception as exc:
                raise StoreError(f"computing {name}: {_first_line(exc)}") from None
            old_df = self._temp_df.pop(name, None)
            df.createOrReplaceTempView(name)
            self._schemas[name] = schema
            self._temp_df[name] = df
            if old_df is not None:
                old_df.unpersist()
            return self.table(name)
        if self.read_only:
            raise StoreError(f"the warehouse {self.path} is open read-only; cannot write {name}")
        where = self.path / name / uuid.uuid4().hex[:12]
        try:
            from ibis.backends.pyspark.datatypes import PySparkSchema
            from pyspark.sql import functions as sf

            # stored as the types the table declares, whatever Spark inferred for the query
            want = PySparkSchema.from_ibis(schema)
            df = df.select(*[sf.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in want])
            df.write.mode("error").parquet(str(where))
        except Exception as exc:
            shutil.rmtree(where, ignore_errors=True)
            raise StoreError(f"writing {name}: {_first_line(exc)}") from None
        self._publish(name, where, schema)
        return self.table(name)

    def _publish(self, name: str, where: Path, schema: sch.Schema) -> None:
        """Point ``name`` at the version in ``where``; the old one goes at commit."""
        old = self._where.get(name)
        if name in self._temp_df:
            self._temp_df.pop(name).unpersist()
        self._register(name, where, schema)
        self._where[name] = where
        if self._in_tx:
            self._undo.setdefault(name, old)
            if old is not None:
                self._garbage.append(old)
        else:
            self._save_manifest()
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def _save_manifest(self) -> None:
        permanent = self._where
        state = {
            "tables": {n: p.name for n, p in sorted(permanent.items())},
            "schemas": {n: _schema_to_json(self._schemas[n]) for n in sorted(permanent)},
        }
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)

    def _frame(self, data: pa.Table, schema: sch.Schema) -> Any:
        from ibis.backends.pyspark.datatypes import PySparkSchema

        spark_schema = PySparkSchema.from_ibis(schema)
        if data.num_rows == 0:
            return self._session.createDataFrame([], spark_schema)
        cols = {}  # JSON columns are text in Spark
        for name, dtype in schema.items():
            col = data.column(name)
            if dtype.is_json() and not pa.types.is_string(col.type):
                col = col.cast(pa.string())
            cols[name] = col
        return self._session.createDataFrame(pa.table(cols), spark_schema)

    # -- the Warehouse interface ---------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Missing canonical tables, written as empty Parquet files without running a job."""
        import pyarrow.parquet as pq

        for name in TABLES:
            if name not in self._where:
                schema = table_schema(name)
                where = self.path / name / uuid.uuid4().hex[:12]
                where.mkdir(parents=True)
                pq.write_table(_arrow_schema(schema).empty_table(), where / "part-0.parquet")
                self._publish(name, where, schema)

    def table(self, name: str) -> ibis.Table:
        schema = self._schemas.get(name)
        if schema is None:
            raise StoreError(f"no table {name} in the Spark warehouse {self.path}")
        return ops.DatabaseTable(
            name=name, schema=schema, source=self._con, namespace=ops.Namespace()
        ).to_expr()

    def tables(self) -> list[str]:
        return sorted(self._where)

    def execute(self, expr: ibis.Expr) -> Any:
        try:
            return self._con.execute(expr)
        except Exception as exc:
            raise StoreError(_first_line(exc), _sql(self._con, expr)) from None

    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        try:
            return self._con.to_pyarrow(expr)
        except Exception as exc:
            raise StoreError(_first_line(exc), _sql(self._con, expr)) from None

    def _conform(self, name: str, expr: ibis.Table) -> ibis.Table:
        target = self._schemas[name]
        return expr.select(
            *[
                expr[c].cast(t).name(c) if c in expr.columns else ibis.null(t).name(c)
                for c, t in target.items()
            ]
        )

    def insert(self, name: str, expr: ibis.Table) -> None:
        if name not in self._schemas:
            raise StoreError(f"no table {name} in the Spark warehouse {self.path}")
        rows = ibis.union(self.table(name), self._conform(name, expr), distinct=False)
        self._write(name, self._dataframe(rows), self._schemas[name], temp=name in self._temp_df)

    def stage(self, name: str, data: pa.Table, *, append: bool) -> ibis.Table:
        schema = sch.Schema.from_pyarrow(data.schema)
        df = self._frame(data, schema)
        if append and name in self._schemas:
            df = self._dataframe(self.table(name)).unionByName(df)
            schema = self._schemas[name]
        return self._write(name, df, schema, temp=True)

    def load_arrow(self, name: str, data: pa.Table) -> None:
        """Written as a Parquet file by pyarrow, on this machine: no Spark job."""
        import pyarrow.parquet as pq

        if self.read_only:
            raise StoreError(f"the warehouse {self.path} is open read-only; cannot write {name}")
        schema = _canonical(name, self._schemas.get(name) or sch.Schema.from_pyarrow(data.schema))
        target = _arrow_schema(schema)
        cols = [data.column(f.name).cast(f.type) for f in target]
        where = self.path / name / uuid.uuid4().hex[:12]
        where.mkdir(parents=True)
        try:
            pq.write_table(pa.Table.from_arrays(cols, schema=target), where / "part-0.parquet")
        except (pa.ArrowException, OSError) as exc:
            shutil.rmtree(where, ignore_errors=True)
            raise StoreError(f"writing {name}: {_first_line(exc)}") from None
        self._publish(name, where, schema)

    def delete_matching(self, name: str, keys: ibis.Table, on: list[str]) -> int:
        before = self.count(name)
        kept = self.table(name).anti_join(keys.select(*on).distinct(), on)
        self._write(name, self._dataframe(kept), self._schemas[name], temp=name in self._temp_df)
        return before - self.count(name)

    def replace(self, name: str, expr: ibis.Table) -> None:
        self._write(name, self._dataframe(expr), expr.schema(), temp=False)

    def materialize(self, name: str, expr: ibis.Table) -> ibis.Table:
        return self._write(name, self._dataframe(expr), expr.schema(), temp=True)

    def set_timezone(self, tz: str) -> None:
        self._session.conf.set("spark.sql.session.timeZone", tz)

    def stage_expr(self, name: str, expr: ibis.Table, *, append: bool) -> ibis.Table:
        if not append or name not in self._schemas:
            return self.materialize(name, expr)
        rows = ibis.union(self.table(name), self._conform(name, expr), distinct=False)
        return self._write(name, self._dataframe(rows), self._schemas[name], temp=True)

    def drop_staging(self, name: str) -> None:
        df = self._temp_df.pop(name, None)
        if df is not None:
            self._schemas.pop(name, None)
            self._session.catalog.dropTempView(name)
            df.unpersist()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:  # nested: the outer transaction decides
            yield
            return
        self._in_tx, self._garbage, self._undo = True, [], {}
        try:
            yield
        except BaseException:
            for name, old in self._undo.items():
                new = self._where.pop(name, None)
                if old is not None:
                    self._where[name] = old
                    self._register(name, old, self._schemas[name])
                if new is not None and new != old:
                    shutil.rmtree(new, ignore_errors=True)
            raise
        finally:
            self._in_tx = False
        self._save_manifest()
        for old in self._garbage:
            shutil.rmtree(old, ignore_errors=True)
        self._garbage, self._undo = [], {}

    def add_column(self, table: str, name: str, sql_type: str) -> None:
        if name in self._schemas[table]:
            return
        dtype = ibis.dtype(sql_type.lower())
        t = self.table(table)
        self.replace(table, t.mutate(**{name: ibis.null(dtype)}))

    def splink(self, expr: ibis.Table) -> tuple[Any, Any]:
        """Splink's Spark backend on this session, and ``expr`` as a Spark DataFrame: the
        candidate pairs of probabilistic matching are blocked and scored by the executors."""
        from pyspark.sql.types import DoubleType
        from splink.backends.spark import SparkAPI

        # intermediate tables are kept in the executors' memory, like our staging tables
        api = SparkAPI(spark_session=self._session, break_lineage_method="persist")
        # Splink writes the DuckDB name of Jaro-Winkler in custom levels; same function
        self._session.udf.registerJavaFunction(
            "jarowinkler_similarity", "uk.gov.moj.dash.linkage.JaroWinklerSimilarity", DoubleType()
        )
        return api, self._dataframe(expr)

    def close(self) -> None:
        for name in list(self._temp_df):
            self.drop_staging(name)
        for name in list(self._where):
            self._session.catalog.dropTempView(name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


def _sql(con: Any, expr: ibis.Expr) -> str | None:
    try:
        return str(con.compile(expr))
    except Exception:  # the SQL is only a diagnostic aid
        return None


def _canonical(name: str, schema: sch.Schema) -> sch.Schema:
    """``schema`` with the JSON columns of canonical table ``name`` typed JSON again (Spark,
    Arrow and pandas only know them as text)."""
    if name not in TABLES:
        return schema
    canon = table_schema(name)
    return ibis.schema(
        {
            c: canon[c] if c in canon and canon[c].is_json() and t.is_string() else t
            for c, t in schema.items()
        }
    )


def _arrow_schema(schema: sch.Schema) -> pa.Schema:
    """The Arrow schema Spark reads ``schema`` from (JSON as text)."""
    return pa.schema(
        [pa.field(c, pa.string() if t.is_json() else t.to_pyarrow()) for c, t in schema.items()]
    )


def _schema_to_json(schema: sch.Schema) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in schema.items()}


def _schema_from_json(data: dict[str, str]) -> sch.Schema:
    return ibis.schema({name: ibis.dtype(t) for name, t in data.items()})
