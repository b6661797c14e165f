"""``lancert check``'s library: the padlock verdict, in :mod:`lancert.check.verdict`."""
