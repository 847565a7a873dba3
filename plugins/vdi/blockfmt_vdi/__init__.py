"""blockfmt vdi format plugin."""
