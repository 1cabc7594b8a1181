"""``python -m fastbp.bench``: the same as ``fastbp bench`` (and the workers' entry)."""

import sys

from fastbp.bench.driver import main

sys.exit(main())
