"""Everything that speaks HTTP to Meta's Graph API."""
