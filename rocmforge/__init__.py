"""The ``rocmforge`` name on the Python path, so that ``python -m rocmforge`` runs the command line as the
``rocmforge`` script does. The code lives in ``rocmforge_core`` and the plugins."""

from rocmforge_core import __version__

__all__ = ["__version__"]
