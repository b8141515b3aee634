"""Importers: outside formats -> the data contract (``catalog.parquet`` + ``interactions.parquet``).

One module per format; all of them finish in ``output.write_import`` so checks, unknown-item handling and
the atomic write are the same everywhere.
"""
from unisem.data.importers.amazon import import_amazon
from unisem.data.importers.output import ImportSummary
from unisem.data.importers.sequence_file import import_sequence_files
from unisem.data.importers.table import import_tables, parse_mapping

__all__ = ["ImportSummary", "import_amazon", "import_sequence_files", "import_tables", "parse_mapping"]
