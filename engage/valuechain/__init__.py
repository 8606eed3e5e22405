"""The value chain as data (issue 16): disclosed maps imported, resolved to companies, screened."""
