"""`.venv-bench`: the venv the Quix Streams peer of `bench_pipeline.py` runs in.

Its own venv because quixstreams 3.28 pins `pydantic<2.14` and meterflow pins 2.14 (the
guard of `costing/_trusted.py`), so neither a `bench` extra nor the project venv can hold both.
Made on first use, and again when `pyproject.toml` or `quix-peer-requirements.txt` changed:
meterflow (editable, its own pins), then quixstreams `--no-deps`, then its other requirements.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-bench"
REQUIREMENTS = Path(__file__).with_name("quix-peer-requirements.txt")
QUIXSTREAMS = "quixstreams==3.28.1"
STAMP = VENV / ".meterflow-bench-stamp"


def _fingerprint() -> str:
    digest = hashlib.sha256(QUIXSTREAMS.encode())
    for path in (ROOT / "pyproject.toml", REQUIREMENTS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def peer_python() -> Path:
    """The peer venv's interpreter, the venv made or refreshed first when needed."""
    python = VENV / "bin" / "python"
    wanted = _fingerprint()
    if python.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python
    print(f"making {VENV} for the Quix Streams peer (once)", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    subprocess.run([*pip, "--no-deps", QUIXSTREAMS], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([str(python), "-c", "import quixstreams, meterflow.costing"], check=True)
    STAMP.write_text(wanted)
    return python
