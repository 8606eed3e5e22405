"""The value chain on the web: importing a disclosed map (upload, mapping, preview, confirm), and the
engagement's value-chain tab (figures, flagged links and their status, the network drawing,
relationships added one by one)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("valuechain", __name__, url_prefix="/value-chain")
#: The map import keeps its uploads in the holdings import's stash, under its own kind.
KIND = "valuechain"


# ---------------------------------------------------------------------------------------------
# Importing a map: upload, column mapping, preview, confirm.
# ---------------------------------------------------------------------------------------------

# (import routes go here)


# ---------------------------------------------------------------------------------------------
# The engagement's value-chain tab: figures, flagged links, status changes, the drawing,
# relationships added one by one.
# ---------------------------------------------------------------------------------------------

# (tab routes go here)
