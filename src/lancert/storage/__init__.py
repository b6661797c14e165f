"""Writing keys and certificates to disk, atomically: :mod:`lancert.storage.files`."""
