"""The device flow: the certificate a receipt printer makes for itself (:mod:`lancert.device.certificate`)."""
