"""lispnet: the Locator/ID Separation Protocol network (RFC 9300/9301 and companions)."""

__version__ = "0.1.0"
