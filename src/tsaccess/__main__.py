import sys

from tsaccess.cli import main

sys.exit(main())
