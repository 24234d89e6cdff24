"""One readable stack per kind of route (plain, batch, ingest), and the parts they share."""
