import sys

from pe_hooks.cli.main import main

sys.exit(main())
