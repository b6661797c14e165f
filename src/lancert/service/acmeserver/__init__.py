"""The service's ACME front (RFC 8555): lancert as an ACME CA for certbot, lego, Caddy...

Named ``acmeserver`` so it never shadows certbot's ``acme`` library, which the tests drive beside it.
:mod:`.build` wires it to the service's database, authority and issuer.
"""
