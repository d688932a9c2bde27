"""A rate limit shared by every worker: token buckets in Redis, on requests and tokens per minute.

Providers limit an account, not a process; so the buckets live in Redis, keyed by provider/model,
and one Lua script refills and takes atomically, on Redis's clock (workers' clocks may disagree).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# KEYS[1]: bucket hash. ARGV: capacity of requests, of tokens (per minute; 0 = unlimited), tokens wanted.
# Returns 0 when granted, else the milliseconds until both buckets could grant it.
TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local req_cap, tok_cap, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'req', 'tok', 'ts')
local req = tonumber(state[1]) or req_cap
local tok = tonumber(state[2]) or tok_cap
local ts = tonumber(state[3]) or now
local elapsed = math.max(0, now - ts)
req = math.min(req_cap, req + elapsed * req_cap / 60000)
tok = math.min(tok_cap, tok + elapsed * tok_cap / 60000)
want = math.min(want, tok_cap)
local wait = 0
if req_cap > 0 and req < 1 then wait = math.max(wait, (1 - req) * 60000 / req_cap) end
if tok_cap > 0 and tok < want then wait = math.max(wait, (want - tok) * 60000 / tok_cap) end
if wait == 0 then
  if req_cap > 0 then req = req - 1 end
  if tok_cap > 0 then tok = tok - want end
end
redis.call('HSET', KEYS[1], 'req', req, 'tok', tok, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 120000)
return math.ceil(wait)
"""


@dataclass
class RateLimiter:
    """Requests and tokens per minute for one provider/model, across all workers."""

    client: redis.Redis
    key: str
    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    def __post_init__(self) -> None:
        self._take = self.client.register_script(TAKE)

    @property
    def enabled(self) -> bool:
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0

    def try_acquire(self, tokens: int) -> float:
        """Take one request and ``tokens`` tokens: 0.0 if granted, else seconds to wait (nothing taken)."""
        if not self.enabled:
            return 0.0
        args = [self.requests_per_minute, self.tokens_per_minute, max(0, tokens)]
        wait_ms = int(self._take(keys=[self.key], args=args))
        return wait_ms / 1000.0


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """A conservative guess before the call: ~4 characters a token in, the whole answer budget out."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + max_tokens
