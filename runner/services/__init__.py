"""Services for integration tests: containers, local processes or external ones, ready for real.

``spec`` parses what the user asked for; ``backends`` is the protocol and registry of the
backends that provide it (``docker``, ``local``, ``external``), which ``lifecycle`` drives;
``probes`` decide when it is ready (its own protocol, never a sleep), ``running`` says
what it exports, and ``databases`` gives each xdist worker a database of its own.
"""

from pathlib import Path

# Where ``services up`` records what it started (``cli`` names it in its help, lazily).
STATE_FILE = Path(".testgate") / "services.json"
