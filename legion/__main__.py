"""`python -m legion` is the `legion` command."""

from legion.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
