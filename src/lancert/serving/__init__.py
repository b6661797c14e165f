"""The one way lancert serves an HTTP(S) port: :mod:`.ports` (the server, body cap, logs, ready),
:mod:`.connections` (connection cap, eviction, timeouts), :mod:`.docs` (the API page's assets, local)."""
