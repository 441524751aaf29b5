"""`python -m realtime` runs the ipmcam command line."""
from realtime.cli import entry

entry()
