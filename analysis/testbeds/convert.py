"""Rebuild a shipped testbed's compact file from the raw upstream folder.

    .venv/bin/python -m analysis.testbeds.convert olmo_ladder ../shared/external/olmo_ladder
    .venv/bin/python -m analysis.testbeds.convert pythia ../shared/external/pythia
    .venv/bin/python -m analysis.testbeds.convert obsscaling ../shared/external/obsscaling

Reads the raw layout with the testbed's own importer (so the shipped table is exactly what
`path=<raw folder>` gives), writes `<name>.parquet` (zstd) atomically into the shipped folder
and copies the upstream LICENSE beside it.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from analysis.errors import AnalysisError, AnalysisWarning
from analysis.output import files as io
from analysis.testbeds import TESTBEDS

HERE = Path(__file__).resolve().parent


def convertible() -> list[str]:
    """Testbeds shipped as a compact file rebuilt from a raw layout (their `read_raw`)."""
    return [n for n, b in TESTBEDS.items() if b.read_raw is not None and b.compact]


def convert(name: str, raw: Path, dest: Path | None = None) -> Path:
    """Write the compact table of testbed `name` read from `raw`; returns its path."""
    if name not in convertible():
        known = ", ".join(convertible())
        raise AnalysisError(f"testbed: unknown testbed '{name}' (known: {known})")
    bed = TESTBEDS[name]
    fname, read_raw = bed.compact, bed.read_raw
    assert fname is not None and read_raw is not None  # what convertible() checks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        table = read_raw(Path(raw))
    dest = Path(dest) if dest else bed.shipped
    if dest is None:
        raise AnalysisError(f"dest: required, testbed '{name}' has no shipped copy")
    dest.mkdir(parents=True, exist_ok=True)
    out = io.atomic_write(
        dest / fname,
        lambda p: table.to_parquet(p, index=False, compression="zstd", compression_level=19),
    )
    lic = Path(raw) / "LICENSE"
    if lic.is_file():
        io.write_text(dest / "LICENSE", lic.read_text())
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    try:
        path = convert(argv[1], Path(argv[2]))
    except AnalysisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
