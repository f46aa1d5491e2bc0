"""``python -m app``: the same command line as ``relmem``."""

# The import stays under the guard: a spawned training worker imports this module as
# ``__mp_main__`` and must not load the web server.
if __name__ == "__main__":
    import sys

    from app.cli import main

    sys.exit(main())
