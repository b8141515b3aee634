"""Data at the edges: the Parquet contract, importers, demo data, sequence datasets and splits."""
