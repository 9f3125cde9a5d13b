"""Allow ``python -m ci``."""

from ci.cli import main

main()
