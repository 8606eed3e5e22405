"""Shared machinery every feature uses, each module with a public API.

- `outbox`: every email is a row first (`enqueue`), sent by `drain` with retries.
- `documents`: HTML to PDF with the letter stylesheet, fetching nothing.

Core sits between the features and the models: it may import models and the foundation
(extensions, clock), never a feature package (see README, Layout, and the import-linter
contracts in pyproject.toml).
"""
