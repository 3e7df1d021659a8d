"""Project scripts (run as files); a package so that renderers here import as ``scripts.<name>``."""
