"""Reading lesson text: analysis, similarity and contradiction (pure functions)."""
