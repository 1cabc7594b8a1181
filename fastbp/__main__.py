"""``python -m fastbp``: the ``fastbp`` command (also ``python -m mpi4py -m fastbp``)."""

import sys

from fastbp.cli import main

sys.exit(main())
