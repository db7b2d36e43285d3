"""``python -m imc_cluster``: the ``imc-cluster`` command line."""

import sys

from .cli import main

sys.exit(main())
