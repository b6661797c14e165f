"""lancert: certificates that browsers and POS apps trust, for the devices of a shop's local network."""

__version__ = "0.1.0"
