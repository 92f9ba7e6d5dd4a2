import sys

from matalu.cli import main

sys.exit(main())
