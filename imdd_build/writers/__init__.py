"""Shard writers: one interface (`open`, `write`, `close`) per output format, chosen by name."""

from .parquet import ParquetShardWriter
from .webdataset import WebDatasetShardWriter, webdataset_features

WRITERS = {"parquet": ParquetShardWriter, "webdataset": WebDatasetShardWriter}

__all__ = ["WRITERS", "ParquetShardWriter", "WebDatasetShardWriter", "webdataset_features"]
