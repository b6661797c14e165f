"""Wire contracts shared by a server and its clients, so a client never imports its server.

:mod:`.provisioning` (and :mod:`.limits`): the certificate service's native API and compatible
JSON-RPC call (service and box agent); :mod:`.pairing`: how a POS is named in its client certificate
(terminal and POS).
"""
