"""The example mesh: a producer, a consumer that stores into a database, and the batching proxy between them."""
