"""What the producer, the consumers and the operator tools share: names, envelope, topology."""
