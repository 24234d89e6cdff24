"""HTTP/2: server and client connections over the h2 state machine, with the limits that refuse its attacks."""
