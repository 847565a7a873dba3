"""An example blockfmt format plugin: the format ``example``."""
