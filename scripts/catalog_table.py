"""Print the README's catalog table from openapi.yaml: `python scripts/catalog_table.py`.

tests/test_readme.py checks that the README holds exactly this table, so the README cannot
drift from the spec.
"""

from __future__ import annotations

from typing import Any

from mock_runbase.catalog import Model, by_fields
from mock_runbase.spec import load_spec


def usd(micro: float) -> str:
    return f"${micro / 1_000_000:.3f}".rstrip("0").rstrip(".") if micro else "$0"


def price(model: Model) -> str:
    cost = model.cost
    per = "/s" if isinstance(cost, dict) and cost.get("perSecond") else ""
    if not isinstance(cost, dict):
        return usd(cost)
    if "value" in cost:
        return usd(cost["value"]) + per
    keys = by_fields(cost)
    return ", ".join(f"{k} {usd(v)}{per}" for k, v in cost["values"].items()) if keys else "?"


def options(model: Model) -> str:
    parts = []
    for name, prop in model.input_schema.get("properties", {}).items():
        if name == "prompt":
            continue
        if "enum" in prop:
            values = " ".join(str(v) for v in prop["enum"])
            parts.append(f"`{name}` {values}")
        elif name == "image_urls":
            megabytes = prop["items"]["x-runbase-max-bytes"] // (1024 * 1024)
            parts.append(f"`image_urls` up to {prop['maxItems']} x {megabytes} MB")
        elif prop.get("type") == "number":
            parts.append(f"`{name}` {prop['minimum']:g} to {prop['maximum']:g}")
        else:
            parts.append(f"`{name}` {prop.get('type', '')}".rstrip())
    return "; ".join(parts)


def source(node: Any) -> str:
    return (
        str(node.get("x-runbase-source", "documented")) if isinstance(node, dict) else "documented"
    )


def video_facts(model: Model) -> str:
    if model.video is None:
        return ""
    full = model.with_defaults({})
    audio = model.video["audio"]
    sound = "audio" if audio == "always" else ("no audio" if audio == "never" else "audio if asked")
    return f"{model.duration_s(full):g} s by default, {model.fps(full)} fps, {sound}"


def table() -> str:
    rows = [
        "| model | kind | inputs (besides `prompt`) | price | price source | video |",
        "|---|---|---|---|---|---|",
    ]
    for model in load_spec().catalog:
        kind = model.kind + (
            " (no page: inferred)" if source(model.input_schema) == "inferred" else ""
        )
        rows.append(
            f"| `{model.id}` | {kind} | {options(model)} | {price(model)} | "
            f"{source(model.cost)} | {video_facts(model)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
