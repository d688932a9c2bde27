"""LLM adapters: the offline heuristic and anything litellm reaches."""
