import sys

from runtime.evaluate.cli import main

sys.exit(main())
