"""Hook implementations of the vdi format (being written)."""
