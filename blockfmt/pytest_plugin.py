"""pytest plugin (``pytest11`` entry point) with fixtures for blockfmt and format-plugin authors."""
