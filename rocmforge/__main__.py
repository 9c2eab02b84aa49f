"""``python -m rocmforge ...``: the ``rocmforge`` command."""

import sys

from rocmforge_core.cli import main

sys.exit(main())
