"""``python -m ipmcam``: the same as the ``ipmcam`` command."""
from ipmcam.cli import entry

entry()
