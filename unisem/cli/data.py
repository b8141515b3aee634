"""``unisem data``: import outside formats into the data contract, make demo data, inspect a data folder."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("data", help="import, generate or inspect catalog + interactions data")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    imp = sub.add_parser("import", help="import a dataset into catalog.parquet + interactions.parquet")
    fmt = imp.add_subparsers(dest="format", metavar="FORMAT", required=True)

    b = fmt.add_parser(
        "beauty", parents=[common], help="sequence-file format: sequences.txt + items.jsonl (e.g. amazon-beauty)"
    )
    b.add_argument("source", help="folder holding sequences.txt and items.jsonl")
    b.add_argument("--out", required=True, help="output folder (replaced atomically)")
    _add_replace(b)
    b.set_defaults(handler=_import_beauty)

    a = fmt.add_parser("amazon", parents=[common], help="raw Amazon review dumps, 2014 or 2018 (gzipped or not)")
    a.add_argument("--reviews", required=True, help="reviews file (JSON lines: reviewerID, asin, unixReviewTime)")
    a.add_argument("--meta", required=True, help="metadata file (2014: Python dict lines; 2018: JSON lines)")
    a.add_argument("--style", choices=("auto", "2014", "2018"), default="auto", help="release (default: detect)")
    a.add_argument(
        "--duplicates", choices=("fail", "first"), default="fail",
        help="repeated asin in the metadata: fail, or keep the first (the 2018 dumps repeat some)",
    )
    a.add_argument("--out", required=True, help="output folder (replaced atomically)")
    _add_replace(a)
    a.set_defaults(handler=_import_amazon)

    t = fmt.add_parser("table", parents=[common], help="CSV / TSV / Parquet / JSON-lines tables with a column mapping")
    t.add_argument("--catalog", required=True, help="catalog table (item_id, title, brand, categories, price, ...)")
    t.add_argument("--interactions", required=True, help="interactions table (user_id, item_id, timestamp|position)")
    t.add_argument(
        "--map", dest="mapping", action="append", default=[], metavar="FIELD=COLUMN",
        help="source column for a contract field, e.g. user_id=uid, catalog.item_id=sku (repeatable)",
    )
    t.add_argument("--timestamp-unit", choices=("s", "ms", "us"), default="s", help="unit of numeric timestamps")
    t.add_argument("--category-separator", default="|", help="splits a text category path (default: |)")
    t.add_argument("--out", required=True, help="output folder (replaced atomically)")
    _add_replace(t)
    t.set_defaults(handler=_import_table)

    d = sub.add_parser("demo", parents=[common], help="generate the synthetic demo data (data.demo settings)")
    d.add_argument("--out", default=None, help="output folder (default: the demo folder under UNISEM_HOME, reused)")
    _add_replace(d, "generated data")
    d.set_defaults(handler=_demo)

    g = sub.add_parser("large", parents=[common], help="generate a large synthetic data set in chunks (scaling tests)")
    g.add_argument("--out", required=True)
    g.add_argument("--items", type=int, default=1_000_000)
    g.add_argument("--interactions", type=int, default=10_000_000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--chunk-rows", type=int, default=1_000_000)
    _add_replace(g, "generated data")
    g.set_defaults(handler=_large)

    i = sub.add_parser("inspect", parents=[common], help="print counts, schema and examples of a data folder")
    i.add_argument("folder", help="folder with catalog.parquet and interactions.parquet")
    i.add_argument("--examples", type=int, default=3, help="example rows to show per table (default: 3)")
    i.set_defaults(handler=_inspect)


def _add_replace(p: argparse.ArgumentParser, what: str = "import") -> None:
    p.add_argument("--replace", action="store_true",
                   help=f"replace --out even when it is not an earlier {what} (never when it holds an input)")


def _check_generated_out(out: str, replace: bool) -> None:
    """Generated data replaces its --out folder whole: only an earlier generated folder, or with --replace."""
    from unisem.data.demo import DEMO_META_FILE
    from unisem.data.importers.output import check_output_path

    check_output_path(out, (), replace, marker=DEMO_META_FILE, what="generated data")


def _print_summary(summary) -> int:
    print(
        f"imported {summary.items:,} items, {summary.users:,} users, {summary.interactions:,} interactions"
        f" into {summary.out_dir}"
    )
    if summary.dropped_unknown:
        print(f"dropped {summary.dropped_unknown:,} interactions naming items absent from the catalog")
    if summary.items_without_interactions:
        print(f"{summary.items_without_interactions:,} catalog items have no interactions (kept)")
    return 0


def _import_beauty(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.data.importers import import_sequence_files

    cfg = config_from_args(args)
    return _print_summary(import_sequence_files(args.source, args.out, unknown_items=cfg.data.unknown_items,
                                                replace=args.replace))


def _import_amazon(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.data.importers import import_amazon

    cfg = config_from_args(args)
    summary = import_amazon(
        args.reviews, args.meta, args.out, style=args.style, unknown_items=cfg.data.unknown_items,
        duplicates=args.duplicates, replace=args.replace,
    )
    return _print_summary(summary)


def _import_table(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.data.importers import import_tables

    cfg = config_from_args(args)
    summary = import_tables(
        args.catalog, args.interactions, args.out, mapping=args.mapping, unknown_items=cfg.data.unknown_items,
        timestamp_unit=args.timestamp_unit, category_separator=args.category_separator, replace=args.replace,
    )
    return _print_summary(summary)


def _demo(args: argparse.Namespace) -> int:
    from unisem.cli import config_from_args
    from unisem.data.demo import ensure_demo_data, write_demo

    cfg = config_from_args(args)
    if args.out:
        _check_generated_out(args.out, args.replace)
    folder = write_demo(cfg.data.demo, args.out) if args.out else ensure_demo_data(cfg.data.demo)
    print(f"demo data ({cfg.data.demo.items:,} items, {cfg.data.demo.users:,} users, seed {cfg.data.demo.seed}): {folder}")
    return 0


def _large(args: argparse.Namespace) -> int:
    import time

    from unisem.data.large import generate_large

    _check_generated_out(args.out, args.replace)
    start = time.perf_counter()
    folder = generate_large(args.out, args.items, args.interactions, seed=args.seed, chunk_rows=args.chunk_rows)
    print(f"wrote {args.items:,} items and {args.interactions:,} interactions to {folder} in {time.perf_counter() - start:.1f}s")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE
    from unisem.data.overview import describe

    folder = Path(args.folder)
    for name in (CATALOG_FILE, INTERACTIONS_FILE):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder}: no {name} (is this an imported data folder?)")
    print(describe(folder, examples=args.examples))
    return 0
