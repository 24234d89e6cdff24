"""The running proxy: snapshots built from config, listeners, reload and drain."""
