import sys

try:
    from tsaccess.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command is still loading
    sys.exit(130)

sys.exit(main())
