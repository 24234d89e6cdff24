"""Test helpers: a real upstream server, the `meshbatch run` subprocess, config writers, raw HTTP clients."""
