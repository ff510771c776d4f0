"""Model backends behind one Protocol; see `base.Backend` and `registry`."""
