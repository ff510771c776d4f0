"""Statement verbalization: templates as data, one seeded template draw per example."""
