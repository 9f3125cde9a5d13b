"""The ``ci`` commands, one module per command group; ``ci/cli.py`` registers them on the root.

Each module only parses options, calls a step and hands its result to ``ci.presenter``; step
modules are imported inside the commands so that ``ci --help`` stays fast.
"""
