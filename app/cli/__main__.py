"""``python -m app.cli``: the ``persona`` command (how ``persona up`` and the test stack start workers)."""

from app.cli import main

if __name__ == "__main__":
    main()
