"""The user cache directory imagegate keeps state in (registry data, local runs, parsed schemas).

Stdlib only, so the cheapest importer (lint's schema cache) pays nothing for it.
"""

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The imagegate cache directory: `$XDG_CACHE_HOME/imagegate`, else `~/.cache/imagegate`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagegate"
