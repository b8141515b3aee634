"""Synthetic beauty-shop data: a catalog with realistic item text and users with sequential habits.

The demo data has to make the pipeline *meaningful* without any download, so it is built to have the
structure a sequence model can learn and a popularity ranking cannot:

- items belong to **product lines** (a brand's line for one routine, e.g. a skin-care line with cleanser ->
  toner -> serum -> moisturizer -> sunscreen); a user who bought one step of a line tends to buy the *next*
  step of the same line next, so the last item predicts the next one;
- users have latent **routine** and **brand** preferences (Dirichlet), so histories carry taste as well;
- line popularity is Zipf-like, so there is a head and a tail, but no item dominates.

A few items are dirty on purpose, as real catalogs are (a handful of missing titles, HTML entities such as
``&amp;``, duplicated titles), few enough that the quality gate warns at most.

Everything is drawn from one ``numpy`` generator seeded by ``DemoConfig.seed``: same config, same bytes.
The much bigger, simpler data set of the Spark scaling benchmark is ``unisem.data.large``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unisem.atomic import atomic_dir
from unisem.config.schema import DemoConfig
from unisem.data.contract import (
    CATALOG_FILE,
    CATALOG_SCHEMA,
    INTERACTIONS_FILE,
    conform_catalog,
    conform_interactions,
)
from unisem.home import demo_data_dir

# Bump when the generator changes, so existing demo folders are regenerated rather than silently reused.
GENERATOR_VERSION = 1
DEMO_META_FILE = "demo.json"


class Step(NamedTuple):
    categories: tuple[str, ...]
    product: str
    base_price: float


class Routine(NamedTuple):
    name: str
    steps: tuple[Step, ...]
    attributes: tuple[str, ...]  # shades, scents, skin or hair types: what tells variants apart


def _steps(top: tuple[str, ...], spec: list[tuple[str, str, float]]) -> tuple[Step, ...]:
    return tuple(Step(top + (sub,), product, price) for sub, product, price in spec)


ROUTINES: tuple[Routine, ...] = (
    Routine("skin care", _steps(("Skin Care", "Face"), [
        ("Cleansers", "Foaming Cleanser", 14.0), ("Toners", "Hydrating Toner", 16.0), ("Serums", "Vitamin C Serum", 28.0),
        ("Moisturizers", "Daily Moisturizer", 24.0), ("Sun Care", "Sunscreen SPF 50", 18.0),
        ("Eye Treatments", "Eye Cream", 32.0)]),
        ("for Dry Skin", "for Oily Skin", "for Sensitive Skin", "for Combination Skin", "Fragrance Free")),
    Routine("hair care", _steps(("Hair Care",), [
        ("Shampoos", "Shampoo", 9.0), ("Conditioners", "Conditioner", 9.5), ("Treatments", "Repair Hair Mask", 15.0),
        ("Treatments", "Leave-In Treatment", 13.0), ("Styling Products", "Styling Cream", 12.0),
        ("Styling Products", "Flexible Hold Hairspray", 8.0)]),
        ("for Curly Hair", "for Color-Treated Hair", "for Fine Hair", "Argan Oil", "Coconut")),
    Routine("face makeup", _steps(("Makeup", "Face"), [
        ("Primers", "Pore Minimizing Primer", 22.0), ("Foundation", "Liquid Foundation", 30.0),
        ("Concealers", "Full Coverage Concealer", 18.0), ("Powder", "Setting Powder", 20.0), ("Blush", "Powder Blush", 16.0),
        ("Setting Sprays", "Setting Spray", 19.0)]),
        ("Shade 110 Porcelain", "Shade 220 Natural Beige", "Shade 310 Warm Honey", "Shade 420 Mocha", "Matte Finish")),
    Routine("eye makeup", _steps(("Makeup", "Eyes"), [
        ("Eyeshadow", "Eyeshadow Primer", 14.0), ("Eyeshadow", "Eyeshadow Palette", 34.0), ("Eyeliner", "Liquid Eyeliner", 11.0),
        ("Mascara", "Volumizing Mascara", 12.0), ("Makeup Remover", "Eye Makeup Remover", 9.0)]),
        ("Black", "Brown", "Waterproof", "Smoky Neutrals", "Rose Gold")),
    Routine("lips", _steps(("Makeup", "Lips"), [
        ("Lip Care", "Lip Scrub", 10.0), ("Lip Liners", "Lip Liner", 8.0), ("Lipstick", "Matte Lipstick", 15.0),
        ("Lip Gloss", "Lip Gloss", 12.0)]),
        ("Classic Red", "Nude Pink", "Berry", "Coral", "Mauve")),
    Routine("nails", _steps(("Makeup", "Nails"), [
        ("Nail Polish", "Base Coat", 8.0), ("Nail Polish", "Nail Lacquer", 9.0), ("Nail Polish", "Quick Dry Top Coat", 8.5),
        ("Nail Care", "Cuticle Oil", 7.0), ("Nail Polish Removers", "Acetone-Free Polish Remover", 5.0)]),
        ("0.5 fl oz", "Gel Effect", "Glitter", "Pastel", "Chip Resistant")),
    Routine("bath and body", _steps(("Bath & Body",), [
        ("Cleansers", "Body Wash", 8.0), ("Scrubs & Body Treatments", "Sugar Body Scrub", 14.0),
        ("Moisturizers", "Body Lotion", 11.0), ("Moisturizers", "Hand Cream", 7.0)]),
        ("Lavender", "Shea Butter", "Cucumber Melon", "Vanilla", "Unscented")),
    Routine("fragrance", _steps(("Fragrance",), [
        ("Women's", "Eau de Parfum", 55.0), ("Women's", "Body Mist", 16.0), ("Women's", "Scented Deodorant", 9.0)]),
        ("Floral", "Citrus", "Oriental", "Fresh", "Woody")),
    Routine("tools", _steps(("Tools & Accessories",), [
        ("Makeup Brushes & Tools", "Makeup Brush Set", 25.0), ("Makeup Brushes & Tools", "Blending Sponge", 7.0),
        ("Makeup Brushes & Tools", "Brush Cleanser", 9.0)]),
        ("Vegan", "Travel Size", "Professional", "Pink", "Bamboo")),
    Routine("men's grooming", _steps(("Men's Grooming",), [
        ("Shaving", "Pre-Shave Oil", 15.0), ("Shaving", "Shaving Cream", 9.0), ("Shaving", "Aftershave Balm", 14.0),
        ("Beard Care", "Beard Oil", 17.0)]),
        ("Sandalwood", "Sensitive Skin", "Eucalyptus", "Cedar", "Unscented")),
)

BRANDS: tuple[tuple[str, float], ...] = (  # (brand, price tier multiplier)
    ("Lumiere", 1.6), ("Aveline", 1.0), ("Nordic Bloom", 1.2), ("Petal & Stone", 1.4), ("Kiyomi", 1.8),
    ("Verdana Botanics", 1.1), ("Opaline", 2.2), ("Maison Clair", 2.6), ("Sunkissed", 0.8), ("Glowlab", 1.0),
    ("Hearth & Honey", 0.9), ("Blue Lagoon Naturals", 1.1), ("Corvette Cosmetics", 0.7), ("Atelier Noir", 2.4),
    ("PureForm", 0.9), ("Velvetine", 1.3), ("Marigold", 0.8), ("Silk Road Beauty", 1.5), ("Daybreak", 0.7),
    ("Ember & Ash", 1.2), ("Coastline", 0.9), ("Nova Skin", 1.3), ("Ironwood", 1.0), ("Bellamy", 1.7),
    ("Tidewater", 0.85), ("Rosehip Co", 1.05), ("Fjord", 1.25), ("Lark", 0.95), ("Solenne", 2.0), ("Quill", 0.75),
)

LINE_NAMES = (
    "Hydra Boost", "Pure Radiance", "Velvet Matte", "Botanical Blend", "Ultra Repair", "Silk Touch", "Clear Balance",
    "Volume Max", "Argan Gold", "Charcoal Detox", "Daily Essentials", "Midnight Renewal", "Fresh Start",
    "Rose Quartz", "Ocean Mineral", "Sensitive Calm", "Youth Revive", "Bright Eyes", "Honey Glow", "Green Tea",
)

SIZES = ("1 oz", "1.7 oz", "3.4 fl oz", "6.8 fl oz", "8.4 fl oz", "0.5 fl oz", "Travel Size", "Value Size")


class DemoCatalog(NamedTuple):
    table: pa.Table
    # For the sequence generator: lines[l] is the list of item rows of line l in routine order.
    lines: list[list[int]]
    line_routine: np.ndarray
    line_brand: np.ndarray


def _build_catalog(n_items: int, rng: np.random.Generator) -> DemoCatalog:
    n_routines = len(ROUTINES)
    # Each brand works in 2-3 routines, so brand and routine preferences are correlated as in real shops.
    brand_routines = [rng.choice(n_routines, size=rng.integers(2, 4), replace=False) for _ in BRANDS]
    pairs = [(b, int(r)) for b, rs in enumerate(brand_routines) for r in rs]
    rng.shuffle(pairs)
    rows: list[dict] = []
    lines: list[list[int]] = []
    line_routine: list[int] = []
    line_brand: list[int] = []
    used_names: set[tuple[int, int, str]] = set()
    k = 0
    while len(rows) < n_items:
        brand, routine_idx = pairs[k % len(pairs)]
        k += 1
        routine = ROUTINES[routine_idx]
        name = str(rng.choice(LINE_NAMES))
        while (brand, routine_idx, name) in used_names and len(used_names) < len(pairs) * len(LINE_NAMES):
            name = str(rng.choice(LINE_NAMES))
        used_names.add((brand, routine_idx, name))
        attribute = str(rng.choice(routine.attributes))
        brand_name, tier = BRANDS[brand]
        line_rows = []
        for step in routine.steps:
            if len(rows) >= n_items:
                break
            size = str(rng.choice(SIZES))
            price = round(float(step.base_price * tier * rng.lognormal(0.0, 0.15)), 2) - 0.01
            rows.append(
                {
                    "title": f"{brand_name} {name} {step.product}, {attribute}, {size}",
                    "brand": brand_name,
                    "categories": list(step.categories),
                    "price": max(round(price, 2), 0.99),
                    "description": (
                        f"{step.product} from the {name} line by {brand_name}, {attribute.lower()}. "
                        f"Part of a {routine.name} routine; best used after the previous step of the line."
                    ),
                }
            )
            line_rows.append(len(rows) - 1)
        lines.append(line_rows)
        line_routine.append(routine_idx)
        line_brand.append(brand)
    _make_dirty(rows, rng)
    # Amazon-like ids, unique, in a shuffled order so that ids carry no structure.
    codes = rng.choice(16**8, size=n_items, replace=False)
    ids = [f"B0{int(c):08X}" for c in codes]
    table = pa.table(
        {
            "item_id": pa.array(ids, pa.string()),
            "title": pa.array([r["title"] for r in rows], pa.string()),
            "description": pa.array([r["description"] for r in rows], pa.string()),
            "brand": pa.array([r["brand"] for r in rows], pa.string()),
            "categories": pa.array([r["categories"] for r in rows], pa.list_(pa.string())),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
            "text": pa.nulls(n_items, pa.string()),
        },
        schema=CATALOG_SCHEMA.set(0, pa.field("item_id", pa.string())),
    )
    return DemoCatalog(table, lines, np.asarray(line_routine), np.asarray(line_brand))


def _make_dirty(rows: list[dict], rng: np.random.Generator) -> None:
    """Missing titles (~0.25%), raw HTML entities (~2%) and copied titles (~1%): realistic, gate-passing."""
    n = len(rows)
    order = rng.permutation(n)
    n_missing, n_html, n_dup = max(1, n // 400), max(1, n // 50), max(1, n // 100)
    for i in order[:n_missing]:
        rows[i]["title"] = None
    for i in order[n_missing : n_missing + n_html]:
        rows[i]["title"] = rows[i]["title"].replace(", ", " &amp; ", 1)
    for i in order[n_missing + n_html : n_missing + n_html + n_dup]:
        j = int(rng.integers(n))
        if rows[j]["title"] is not None and j != i:
            rows[i]["title"] = rows[j]["title"]


def _user_sequences(catalog: DemoCatalog, n_users: int, rng: np.random.Generator) -> list[list[int]]:
    """Per user, a chronological list of catalog rows following lines, routines and brands."""
    n_lines = len(catalog.lines)
    n_routines, n_brands = len(ROUTINES), len(BRANDS)
    popularity = 1.0 / np.arange(1, n_lines + 1) ** 0.6
    popularity = popularity[rng.permutation(n_lines)]
    by_routine = [np.flatnonzero(catalog.line_routine == r) for r in range(n_routines)]
    out = []
    for _ in range(n_users):
        routine_pref = rng.dirichlet(np.full(n_routines, 0.3))
        favourite = np.zeros(n_brands)
        favourite[rng.choice(n_brands, size=3, replace=False)] = 1.0
        length = int(np.clip(np.rint(rng.lognormal(np.log(18.0), 0.5)), 5, 40))

        def pick_line(routine: int) -> int:
            candidates = by_routine[routine]
            if len(candidates) == 0:
                candidates = np.arange(n_lines)
            w = popularity[candidates] * (1.0 + 4.0 * favourite[catalog.line_brand[candidates]])
            return int(rng.choice(candidates, p=w / w.sum()))

        def start() -> tuple[int, int]:
            line = pick_line(int(rng.choice(n_routines, p=routine_pref)))
            step = 0 if rng.random() < 0.6 else int(rng.integers(len(catalog.lines[line])))
            return line, step

        line, step = start()
        seq = [catalog.lines[line][step]]
        while len(seq) < length:
            r = rng.random()
            size = len(catalog.lines[line])
            if r < 0.7:
                # The routine goes on: next step of the same line (or a refill of the line's first step).
                if step + 1 < size:
                    step += 1
                elif rng.random() < 0.5:
                    step = 0
                else:
                    line, step = start()
            elif r < 0.82:
                # Same kind of product from another line of the same routine (trying another brand).
                other = pick_line(int(catalog.line_routine[line]))
                line, step = other, min(step, len(catalog.lines[other]) - 1)
            else:
                line, step = start()
            seq.append(catalog.lines[line][step])
        out.append(seq)
    return out


class DemoData(NamedTuple):
    catalog: pa.Table
    interactions: pa.Table


def generate_demo(demo: DemoConfig) -> DemoData:
    """The demo catalog and interactions in the data contract, deterministic from ``demo.seed``."""
    rng = np.random.default_rng(demo.seed)
    catalog = _build_catalog(demo.items, rng)
    sequences = _user_sequences(catalog, demo.users, rng)
    ids = catalog.table["item_id"].to_pylist()
    users, items, times, positions = [], [], [], []
    t0 = np.datetime64("2022-01-01T00:00:00", "s").astype(np.int64)
    for u, seq in enumerate(sequences):
        start = t0 + int(rng.integers(0, 2 * 365 * 86400))
        gaps = rng.exponential(3 * 86400, size=len(seq)).astype(np.int64) + 60  # strictly increasing
        stamps = start + np.cumsum(gaps)
        users.extend([f"U{u + 1:06d}"] * len(seq))
        items.extend(ids[i] for i in seq)
        times.extend(stamps.tolist())
        positions.extend(range(len(seq)))
    interactions = pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "timestamp": pa.array(np.asarray(times, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "position": pa.array(positions, pa.int64()),
        }
    )
    # Catalog rows in random order too: nothing downstream may rely on line members being adjacent.
    shuffled = catalog.table.take(pa.array(rng.permutation(catalog.table.num_rows)))
    return DemoData(
        conform_catalog(shuffled, "demo catalog"), conform_interactions(interactions, "demo interactions")
    )


def _meta(demo: DemoConfig) -> dict:
    return {"items": demo.items, "users": demo.users, "seed": demo.seed, "generator_version": GENERATOR_VERSION}


def write_demo(demo: DemoConfig, out_dir: str | Path) -> Path:
    """Generate the demo data into ``out_dir`` (replacing it atomically)."""
    data = generate_demo(demo)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        pq.write_table(data.catalog, tmp / CATALOG_FILE)
        pq.write_table(data.interactions, tmp / INTERACTIONS_FILE)
        (tmp / DEMO_META_FILE).write_text(json.dumps(_meta(demo), indent=2, sort_keys=True))
    return out_dir


def is_current(folder: Path, demo: DemoConfig) -> bool:
    try:
        meta = json.loads((folder / DEMO_META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return meta == _meta(demo) and (folder / CATALOG_FILE).exists() and (folder / INTERACTIONS_FILE).exists()


def ensure_demo_data(demo: DemoConfig, home: Path | None = None) -> Path:
    """The demo data folder under ``home``, generated on first use and whenever the demo settings change."""
    folder = demo_data_dir(home)
    if not is_current(folder, demo):
        write_demo(demo, folder)
    return folder
