"""Graph memory: entities and relations beside the vector memories, one Kuzu file per shard."""
