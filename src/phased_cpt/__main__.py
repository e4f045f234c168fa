"""`python -m phased_cpt` is the `phased-cpt` command."""

import sys

from phased_cpt.cli import main

sys.exit(main())
