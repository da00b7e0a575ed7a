"""``python -m kizzasi_lite``: the same as the ``kizzasi`` command."""

import sys

from kizzasi_lite.cli import main

sys.exit(main())
