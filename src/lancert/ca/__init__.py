"""A CA kept on disk (:mod:`lancert.ca.directory`) and the device certificates it issues
(:mod:`lancert.ca.issue`)."""
