"""`python -m proxy` runs the `signing-proxy` command line."""

import sys

from .cli.command import main

sys.exit(main())
