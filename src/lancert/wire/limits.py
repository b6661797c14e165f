"""Limits of the certificate service's wire format that a server needs before it parses anything.

Apart from :mod:`.provisioning` (whose pydantic models are ~0.1 s of CPU and 8 MiB to import): the
service binds its port with the body cap at start and builds the models on the first call that needs
them (:mod:`lancert.service.app`).
"""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024  # the largest request body of the service's HTTP port (a CSR is a few KiB)
