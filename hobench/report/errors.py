"""The one error the report package raises for unreadable or inconsistent results."""


class ReportError(Exception):
    """Results cannot be read or reported; the message is one line naming the file (and line)."""
