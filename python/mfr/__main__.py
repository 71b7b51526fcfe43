import sys

from mfr.cli import main

sys.exit(main())
