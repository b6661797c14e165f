"""``lancert up``: the whole system on loopback. :mod:`lancert.up.system` runs it and judges each padlock;
:mod:`lancert.up.stack`, :mod:`lancert.up.printer` and :mod:`lancert.up.terminal` start its flows."""
