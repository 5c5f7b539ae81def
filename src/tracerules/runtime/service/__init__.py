"""The Kafka service: the consumer loop, rule reloads, health, disk and logs."""
