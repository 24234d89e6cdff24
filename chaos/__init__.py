"""The chaos and soak suite of meshbatch (`meshbatch chaos`, `make chaos`); see docs/reliability.md."""
