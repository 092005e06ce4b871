"""The ws transport."""
