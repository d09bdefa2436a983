"""Reports: terminal tables and matplotlib figures of affinity results."""
