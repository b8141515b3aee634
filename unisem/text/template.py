"""Item text from catalog fields, by a template like the paper's ``{title};{price};{brand};{categories}``.

The template is split on its separator-bearing fields so that a missing field disappears together with its
separator: the paper's texts leave missing parts out rather than writing empty slots.
"""
from __future__ import annotations

import math
import re
import string
from typing import Any, Mapping

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


def build_item_text(fields: Mapping[str, Any], template: str) -> str:
    """Render one item; a non-empty ready-made ``text`` field wins over the template.

    Pieces between placeholders act as separators: a separator is written only between two non-empty parts,
    so ``{title};{price};{brand}`` with no price gives ``title;brand``.
    """
    ready = fields.get("text")
    if isinstance(ready, str) and ready.strip():
        return ready.strip()
    check_template(template)
    pieces = _PLACEHOLDER.split(template)  # [lit, name, lit, name, ..., lit]
    prefix, parts, seps = pieces[0], [], []
    inner = [pieces[i] for i in range(2, len(pieces) - 1, 2)]
    # Category paths are joined like the template joins its fields when it uses one short separator.
    list_sep = next((s for s in inner if len(s.strip()) == 1), ", ")
    for i in range(1, len(pieces), 2):
        parts.append(_render(pieces[i], fields.get(pieces[i]), list_sep))
        seps.append(pieces[i + 1])
    out = ""
    for part, sep_before in zip(parts, [""] + seps[:-1]):
        if not part:
            continue
        out += (sep_before if out else "") + part
    suffix = seps[-1] if seps else ""
    return (prefix + out + suffix).strip() if out else ""
