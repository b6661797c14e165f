"""The certificate service: the provider side of automatic HTTPS for IoT boxes.

A box sends its database credentials; :mod:`lancert.service.authority` decides whether it may have a
certificate and for which names; an :class:`~lancert.service.issuer.Issuer` signs; every issued
certificate is recorded in SQL (:mod:`lancert.service.models`). The HTTP fronts (:mod:`.app`) are thin.
"""
