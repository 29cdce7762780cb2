"""The data source Spark knows as ``deltars``. Spark pickles it (by this module path) to its Python workers:
keep the class here and its name."""

from __future__ import annotations

from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceStreamArrowWriter,
    DataSourceStreamReader,
)
from pyspark.sql.types import StructType

from streaming.lakehouse.deltars.errors import UNSUPPORTED_MARKER, DeltaRsError
from streaming.lakehouse.deltars.options import local_path, lower_keys
from streaming.lakehouse.deltars.read import DeltaRsReader
from streaming.lakehouse.deltars.schema import spark_schema_of
from streaming.lakehouse.deltars.stream import DeltaRsStreamReader
from streaming.lakehouse.deltars.table import open_table
from streaming.lakehouse.deltars.write import DeltaRsStreamWriter, DeltaRsWriter


class DeltaRsDataSource(DataSource):
    """``spark.read.format("deltars").load(path)`` and friends; see the module docstring for options."""

    @classmethod
    def name(cls) -> str:
        return "deltars"

    @property
    def path(self) -> str:
        path = self.options.get("path")
        if not path:
            raise DeltaRsError(f"{UNSUPPORTED_MARKER}: the deltars data source needs a path")
        return local_path(path)

    def schema(self) -> StructType:
        table = open_table(self.path)
        if table is None:
            raise DeltaRsError(f"{UNSUPPORTED_MARKER}: {self.path} is not a Delta table (no _delta_log)")
        return spark_schema_of(table)

    def reader(self, schema: StructType) -> DataSourceReader:
        return DeltaRsReader(self.path, schema, lower_keys(self.options))

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return DeltaRsWriter(self.path, schema, overwrite, lower_keys(self.options))

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return DeltaRsStreamReader(self.path, schema, lower_keys(self.options))

    def streamWriter(self, schema: StructType, overwrite: bool) -> DataSourceStreamArrowWriter:
        return DeltaRsStreamWriter(self.path, schema, overwrite, lower_keys(self.options))
