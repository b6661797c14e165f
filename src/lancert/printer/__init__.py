"""The ePOS printer simulator (``lancert printer run``): a receipt printer as POS pages see it.

- :mod:`lancert.printer.epos`: the ePOS-Print messages (SOAP request → receipt, response), parsed safely;
- :mod:`lancert.printer.device`: the printer's behaviour (serial number, certificates made once or signed
  by the shop's CA, receipts in ``DIR/receipts/``);
- :mod:`lancert.printer.web`: its thin web pages and the ePOS-Print endpoint with CORS;
- :mod:`lancert.printer.server`: HTTP until it has a certificate, HTTPS after a reset, on one port.
"""
