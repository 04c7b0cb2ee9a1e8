"""``python -m profilestore``: the ``profile-store`` command."""

import sys

from profilestore.cli import main

sys.exit(main())
