"""``python -m flowledger``: the command line, as the ``flowledger`` script runs it."""

from flowledger.cli.main import main

if __name__ == "__main__":  # pragma: no cover - run as a program by tests in a subprocess
    main()
