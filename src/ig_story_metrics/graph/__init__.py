"""The only code that speaks to Meta: client, errors, retry policy, paging, stories, insights."""
