import sys

from mfr.experiments.cli import main

sys.exit(main())
