"""Small shared helpers (I/O, config printing, logger and trainer builders)."""
