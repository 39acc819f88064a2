"""Ratios between the throughput bench's rows (bench/train_throughput.py), computed from the
rows alone, so a table cut short (a row failed, a phase hit its time cap) still gets every
ratio its measured rows allow. No torch import: bench/gpu_check.py merges rows with it."""

from __future__ import annotations

from typing import Any


def _rate(row: dict[str, Any] | None) -> float | None:
    return None if not row or "error" in row else row.get("tokens_per_s")


def _by_size(rows: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, dict[str, Any]]]:
    out: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["d"], r["L"]), {})[r["kind"]] = r
    return out


def size_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size with a measured `harness` row: harness / each measured reference."""
    out = []
    for (d, L), kinds in _by_size(rows).items():
        h = _rate(kinds.get("harness"))
        if h is None:
            continue
        refs = {k: _rate(r) for k, r in kinds.items() if not k.startswith("harness")}
        out.append({"d": d, "L": L, **{f"harness/{k}": h / v for k, v in refs.items() if v}})
    return out


def small_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: the fastest measured harness variant / each reference (`best/<ref>`), and
    every other variant / each reference."""
    out = []
    for (d, L), kinds in _by_size(rows).items():
        variants = {k: _rate(r) for k, r in kinds.items() if k.startswith("harness")}
        refs = {k: _rate(r) for k, r in kinds.items() if not k.startswith("harness")}
        measured = {k: v for k, v in variants.items() if v}
        best = max(measured, key=measured.get) if measured else None
        row: dict[str, Any] = {"d": d, "L": L, "best_variant": best}
        for ref, v in refs.items():
            if not v:
                continue
            if best is not None:
                row[f"best/{ref}"] = measured[best] / v
            row.update({f"{k}/{ref}": x / v for k, x in measured.items() if k != best})
        out.append(row)
    return out
