"""Public lists (sanctions, entity lists, exclusions): versions, entries and matching."""
