"""Real secret stores and loopback servers that the store tests run the daemon against."""
