"""Hook implementations of the vhdx format (being written)."""
