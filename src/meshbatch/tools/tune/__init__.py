"""`meshbatch tune`: replay recorded traffic through a simulation of the batcher to choose its settings."""
