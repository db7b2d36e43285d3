"""``python -m imc_cluster``: the ``imc-cluster`` command line."""

import sys

from imc_cluster.cli.main import main

sys.exit(main())
