"""A stand-in for the lent GPU machine's Python, built from this machine's venv: a fresh venv
that sees only the distributions of bench/device_packages.txt (the device image's list; torch
among them, here the CPU build) through a folder of links, and nothing else. tests/
test_gpu_check.py installs the carried wheels into it the way `make gpu-check-device` does
there (pip --no-index), so a package the image lacks and the wheel folder does not bring
fails here, by name, instead of on the device."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def device_names() -> set[str]:
    lines = (ROOT / "bench" / "device_packages.txt").read_text().splitlines()
    return {_norm(ln) for ln in lines if ln.strip() and not ln.startswith("#")}


def carried_names() -> set[str]:
    lines = (ROOT / "bench" / "gpu_requirements.txt").read_text().splitlines()
    return {_norm(re.split(r"[=<>~!; ]", ln, maxsplit=1)[0]) for ln in lines if ln[:1].isalnum()}


def image_closure(dists: dict[str, metadata.Distribution]) -> set[str]:
    """The device list plus what this machine's (often newer) versions of those packages
    require in turn: the image is consistent with its own versions, and only the carried
    packages' needs are under test, so their requirements are not followed."""
    from packaging.requirements import Requirement

    carried = carried_names()
    todo, seen = [n for n in device_names() if n in dists], set()
    while todo:
        name = todo.pop()
        if name in seen or name in carried:
            continue
        seen.add(name)
        for text in dists[name].requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name)) if _norm(req.name) in dists else None
    return seen


def link_device_packages(dest: Path) -> list[str]:
    """Link every top-level file/folder of each installed distribution of the image (and its
    .dist-info, so importlib.metadata finds it) into `dest`; the names linked."""
    dest.mkdir(parents=True)
    site = Path(sysconfig.get_paths()["purelib"])
    dists = {_norm(d.metadata["Name"] or ""): d for d in metadata.distributions(path=[str(site)])}
    linked = []
    for name in sorted(image_closure(dists)):
        dist = dists[name]
        if name in ("pip", "setuptools", "wheel"):
            continue  # the fresh venv brings its own pip
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = site / top
            if top.endswith(".pth") or top == "__pycache__" or not src.exists():
                continue
            if not (dest / top).exists():
                (dest / top).symlink_to(src)
        linked.append(name)
    return sorted(linked)


def device_python(root: Path) -> Path:
    """A venv under `root` whose python sees the device list's packages only; its path."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    # named site-packages like the image's own: dill (datasets' hashing) pickles modules
    # outside a folder of that name by value, which fails for pyarrow's types
    linked = root / "image" / "site-packages"
    link_device_packages(linked)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # after the venv's own site-packages: the wheels pip installs there come first
    (Path(purelib) / "device-image.pth").write_text(f"{linked}\n")
    return py
