import sys

from vaereg_harness.cli import main

sys.exit(main())
