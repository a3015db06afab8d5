"""The run directory's record (metrics.json): written once, atomically, at the end of a run."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RUN_RECORD = "metrics.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        json.dump(data, file, indent=2, sort_keys=False)
        file.write("\n")
    os.replace(file.name, path)


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """The record of a finished run."""
    with (Path(run_dir) / RUN_RECORD).open() as file:
        return json.load(file)
