"""meshbatch benchmark harness: scenarios run by `meshbatch bench` (see README.md here)."""
