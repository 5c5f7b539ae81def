"""Notice sources: one parsed notice per message, from Kafka or from files, folders and archives,
in one total notice order."""
