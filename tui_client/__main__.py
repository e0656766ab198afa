"""Placeholder entry point; the Textual client lands with issue 8."""

import sys


def main() -> int:
    print("tui-client is not built yet", file=sys.stderr)
    return 1
