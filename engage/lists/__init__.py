"""Public lists as their publishers give them: parsers per layout, versions with their diff, the /lists pages;
matching companies to entries, screening and the match review."""
