"""lightpost: integrity-first IoT messaging over Ethereum.

Importing the package is cheap and reads no configuration; the public API is
re-exported below (see ``__all__``).
"""

from __future__ import annotations

from lightpost.errors import LightpostError

__all__ = ["LightpostError", "__version__"]

__version__ = "0.1.0"
