"""``python -m dunning_cli``: the same as the ``dunning`` console script."""

import sys

from dunning_cli.main import main

sys.exit(main())
