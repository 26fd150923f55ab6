"""``python -m qianfan_export_wait``: the command line."""

import sys

from .cli import main

sys.exit(main())
