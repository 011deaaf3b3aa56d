import sys

from toolsync_tui.cli import main

sys.exit(main())
