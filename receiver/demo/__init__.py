"""`labelhook run --demo`: sample callbacks (sender.py) and the sandbox vendor APIs they use (sandbox/)."""
