"""`python -m realtime` runs the ipmcam command line."""
import sys

from realtime.cli import main

sys.exit(main())
