"""Allow ``python -m ci``."""

from ci.cli import main

main(prog_name="ci")
