"""The engagement mailbox: replies and Bcc'd messages read over IMAP and filed on engagements.

settings.py checks the IMAP settings at start-up; imap.py talks to the server; parsing.py reads
a hostile message into plain text and attachments; matching.py finds its engagement;
service.py files it exactly once (or leaves it for triage); routes.py is the triage page.
"""
