"""The running system: notices in (sources), decisions out (engine), kept (store), acted on
(dispatch), and the long-running Kafka service that ties them together (service)."""
