from __future__ import annotations

import sys

from mock_runbase.cli import main

sys.exit(main())
