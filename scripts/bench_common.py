"""Shared set-up for the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

from facepad.demo_data import make_demo_set


def small_demo_set(faces: Path, out: Path, faces_used: int, per_face: int) -> Path:
    """Return the manifest of a demo set from the first `faces_used` portraits, building it once under `out`.

    The portraits are copied into `out` first, so that the warped photos and everything
    made from them stay there.
    """
    manifest = out / "demo" / "manifest.csv"
    if manifest.is_file():
        return manifest
    copies = out / "faces"
    copies.mkdir(parents=True, exist_ok=True)
    for source in sorted(faces.glob("*.jpg"))[:faces_used]:
        target = copies / source.name
        if not target.exists():
            target.write_bytes(source.read_bytes())
    return make_demo_set(out / "demo", faces_dir=copies, per_face=per_face, seed=0)
