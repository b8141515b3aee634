"""Item text from catalog fields, by a template like the paper's ``{title};{price};{brand};{categories}``.

The template is split on its separator-bearing fields so that a missing field disappears together with its
separator: the paper's texts leave missing parts out rather than writing empty slots.
"""
from __future__ import annotations

import functools
import math
import re
import string
import sys
from typing import Any, Mapping, NamedTuple

FIELDS = ("title", "description", "brand", "categories", "price", "item_id")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class TemplateError(ValueError):
    """The text template names a field the catalog does not have, or cannot be parsed."""


def check_template(template: str) -> tuple[str, ...]:
    """The fields a template uses; raises if it uses an unknown one or no field at all."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise TemplateError(f"text.template {template!r}: {exc}") from exc
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise TemplateError(
            f"text.template {template!r}: unknown field {unknown[0]!r}; allowed fields: {', '.join(FIELDS)}"
        )
    if not names:
        raise TemplateError(f"text.template {template!r}: names no field; allowed fields: {', '.join(FIELDS)}")
    return tuple(names)


def _render(name: str, value: Any, sep: str) -> str:
    if value is None:
        return ""
    if name == "categories":
        if isinstance(value, str):
            return value.strip()
        return sep.join(str(v).strip() for v in value if v is not None and str(v).strip())
    if name == "price":
        if isinstance(value, float) and math.isnan(value):
            return ""
        return repr(float(value)) if isinstance(value, (int, float)) else str(value).strip()
    return str(value).strip()


class TemplateParts(NamedTuple):
    """A parsed template: ``prefix`` {fields[0]} ``seps[0]`` {fields[1]} ... {fields[-1]} ``seps[-1]``.

    The literal after a field is written only when a non-empty part follows it, so ``seps[-1]`` is the
    suffix. ``list_sep`` joins the entries of a list field (categories).
    """

    prefix: str
    fields: tuple[str, ...]
    seps: tuple[str, ...]
    list_sep: str


def parse_template(template: str) -> TemplateParts:
    """The one reading of a template, shared by the Python renderer and the Spark expression."""
    check_template(template)
    pieces = _PLACEHOLDER.split(template)  # [lit, name, lit, name, ..., lit]
    inner = [pieces[i] for i in range(2, len(pieces) - 1, 2)]
    # Category paths are joined like the template joins its fields when it uses one short separator.
    list_sep = next((s for s in inner if len(s.strip()) == 1), ", ")
    return TemplateParts(pieces[0], tuple(pieces[1::2]), tuple(pieces[2::2]), list_sep)


def build_item_text(fields: Mapping[str, Any], template: str) -> str:
    """Render one item; a non-empty ready-made ``text`` field wins over the template.

    Pieces between placeholders act as separators: a separator is written only between two non-empty parts,
    so ``{title};{price};{brand}`` with no price gives ``title;brand``.
    """
    ready = fields.get("text")
    if isinstance(ready, str) and ready.strip():
        return ready.strip()
    t = parse_template(template)
    out = ""
    for name, sep_before in zip(t.fields, ("", *t.seps[:-1])):
        part = _render(name, fields.get(name), t.list_sep)
        if not part:
            continue
        out += (sep_before if out else "") + part
    return (t.prefix + out + t.seps[-1]).strip() if out else ""


@functools.cache
def _whitespace_class() -> str:
    """A Java regex class of exactly the characters ``str.strip()`` removes (``str.isspace``)."""
    return "[" + "".join(f"\\x{{{ord(c):X}}}" for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()) + "]"


def spark_item_text(template: str):
    """``build_item_text`` as a Spark column over contract catalog columns: the same parse, the same rules.

    For jobs that measure texts with Spark built-ins (the quality gate) rather than render them in Python
    (the feature job): a test checks that both give the same text on awkward rows.
    """
    from pyspark.sql import functions as F

    ws = _whitespace_class()

    def strip(col):
        return F.regexp_replace(col, f"^{ws}+|{ws}+$", "")

    def part(name: str):
        if name == "categories":
            kept = F.filter(F.col("categories"), lambda c: c.isNotNull() & (strip(c) != ""))
            return F.coalesce(F.array_join(F.transform(kept, strip), t.list_sep), F.lit(""))
        if name == "price":
            return F.coalesce(F.when(~F.isnan("price"), _spark_float_repr(F.col("price"))), F.lit(""))
        return F.coalesce(strip(F.col(name).cast("string")), F.lit(""))

    t = parse_template(template)
    # (separator before, part) per field; the empty parts dropped, the rest joined (each part built once).
    pairs = F.array(*[F.struct(F.lit(sep).alias("sep"), part(name).alias("part"))
                      for name, sep in zip(t.fields, ("", *t.seps[:-1]))])
    kept = F.filter(pairs, lambda x: x["part"] != "")
    out = F.aggregate(kept, F.lit(""), lambda acc, x: F.concat(acc, F.when(acc != "", x["sep"]).otherwise(F.lit("")), x["part"]))
    rendered = F.when(out != "", strip(F.concat(F.lit(t.prefix), out, F.lit(t.seps[-1])))).otherwise(F.lit(""))
    ready = strip(F.col("text"))
    return F.when(ready.isNotNull() & (ready != ""), ready).otherwise(rendered)


def _spark_float_repr(col):
    """Python's ``repr(float)`` of a double column, from Java's ``Double.toString``.

    Both print the shortest digits that read back as the same double; they differ only in layout: Java
    writes ``d.dddE<n>`` outside [1e-3, 1e7), Python ``d.ddde<+nn>`` outside [1e-4, 1e16), and the
    infinities are spelt differently.
    """
    from pyspark.sql import functions as F

    s = col.cast("string")
    sci = r"^(-?)([0-9])\.([0-9]+)E(-?[0-9]+)$"
    sign, lead, frac = (F.regexp_extract(s, sci, i) for i in (1, 2, 3))
    exp = F.regexp_extract(s, sci, 4).cast("int")
    digits = F.concat(lead, F.when(frac == "0", F.lit("")).otherwise(frac))
    # Python lays out in plain digits: 1e-4 <= |x| < 1e-3 (a leading "0.000") or 1e7 <= |x| < 1e16.
    small = F.concat(sign, F.lit("0.000"), digits)
    whole = F.when(F.length(digits) <= exp + 1, F.concat(F.rpad(digits, exp + 1, "0"), F.lit(".0"))).otherwise(
        F.concat(digits.substr(F.lit(1), exp + 1), F.lit("."), digits.substr(exp + 2, F.length(digits)))
    )
    return (
        F.when(s == "Infinity", F.lit("inf"))
        .when(s == "-Infinity", F.lit("-inf"))
        .when(~s.contains("E"), s)
        .when(exp == -4, small)
        .when((exp >= 7) & (exp < 16), F.concat(sign, whole))
        .otherwise(
            F.concat(
                sign,
                lead,
                F.when(frac == "0", F.lit("")).otherwise(F.concat(F.lit("."), frac)),
                F.lit("e"),
                F.when(exp < 0, F.lit("-")).otherwise(F.lit("+")),
                F.when(F.abs(exp) < 10, F.lit("0")).otherwise(F.lit("")),
                F.abs(exp).cast("string"),
            )
        )
    )
