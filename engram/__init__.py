"""engram: long-term memory for AI agents. Domain logic: stages, ports and adapters."""
