"""Cloud sync over MQTT: the client wrapper, topics, the store-and-forward uplink and the downlink."""
