"""Services for integration tests: containers, local processes or external ones, ready for real.

``spec`` parses what the user asked for, ``docker``, ``local`` and the external backend
in ``lifecycle`` provide it, ``probes`` decide when it is ready (its own protocol, never a
sleep), ``running`` says what it exports, and ``databases`` gives each xdist worker a
database of its own.
"""
