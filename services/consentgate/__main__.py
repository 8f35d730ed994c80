import sys

from consentgate.cli import main

sys.exit(main())
