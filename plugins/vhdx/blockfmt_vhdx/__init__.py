"""blockfmt vhdx format plugin."""
