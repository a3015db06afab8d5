"""Where the Hydra configs are: the repository's conf/, where users edit them, or the copy a wheel
carries inside the package (setup.py's build step puts conf/ there)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> str:
    """conf/ of the checkout this package runs from (a clone, an editable install), else the packaged one."""
    checkout = _PACKAGE.parent.parent / "conf"  # src/cnnlab/ -> the repository's root
    if (checkout / "train.yaml").is_file():
        return str(checkout)
    return str(_PACKAGE / "conf")


# absolute, so that Hydra finds it however an entry point is imported and from whichever folder
CONFIG_DIR = config_dir()
