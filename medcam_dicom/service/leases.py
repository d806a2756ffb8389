"""The job queue for workers on other machines: job ids in Redis, and a worker's claim on a job is a **lease**.

A lease is a Redis key ``medcam:lease:<job id>`` holding the worker's token, set atomically with taking the
job off the queue and living ``lease_seconds`` unless the worker renews it. A worker that dies (``kill -9``,
lost network) stops renewing; its lease expires and the serve node's reaper (:meth:`LeaseQueue.orphans`)
hands the job to the queue again. Every write a worker makes to the job goes through the serve node, which
checks that the worker's token is still the lease's (:meth:`LeaseQueue.holds`): a worker whose lease expired
cannot overwrite the work of the one that took the job over.

Keys (prefix ``medcam:``): ``pending`` (list, LPUSH in / RPOP out), ``delayed`` (sorted set, score = due
time: sending retries with backoff), ``lease:<job>`` (string, with expiry), ``holders`` (hash job -> JSON
{worker, since}: who holds what, for ``status``), ``workers`` (hash worker -> last heartbeat, for
``/metrics``). The queue holds references only; a job's record and study stay on the serve node.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "medcam:"

# Move due delayed jobs to the queue, then take one job and set its lease, atomically. A job whose lease is
# held by another worker (a duplicate hand-off) is dropped and the next one tried.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 100)
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[2], job)
  redis.call('LPUSH', KEYS[1], job)
end
while true do
  local job = redis.call('RPOP', KEYS[1])
  if not job then return false end
  if redis.call('SET', ARGV[4] .. job, ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('HSET', KEYS[3], job, ARGV[5])
    return job
  end
end
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached (the message says where); callers retry, job records stay on the serve node."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one job: the token the serve node checks on every write."""

    job_id: str
    token: str
    worker: str
    since: float


class LeaseQueue:
    """Job ids and leases in Redis (``redis://`` or ``rediss://`` URL)."""

    def __init__(self, url: str, lease_seconds: float = 30.0) -> None:
        try:
            import redis
        except ImportError as error:  # pragma: no cover - the redis extra
            raise QueueUnavailable("a Redis queue needs the redis client: pip install 'medcam-dicom[redis]'") from error
        self.url = url
        self.lease_seconds = lease_seconds
        self.redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=10)
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._claim = self.redis.register_script(_CLAIM)
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    def _key(self, name: str) -> str:
        return PREFIX + name

    def _call(self, function, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self._errors as error:
            raise QueueUnavailable(f"Redis at {self.url}: {error}") from error

    # ------------------------------------------------------------------ serve node
    def enqueue(self, job_id: str, delay: float = 0.0) -> None:
        """Hand a job to the workers, now or after ``delay`` seconds."""
        if delay > 0:
            self._call(self.redis.zadd, self._key("delayed"), {job_id: time.time() + delay})
        else:
            self._call(self.redis.lpush, self._key("pending"), job_id)

    def waiting(self, job_id: str) -> bool:
        """Whether the job is in the queue (now or delayed)."""
        if self._call(self.redis.zscore, self._key("delayed"), job_id) is not None:
            return True
        return self._call(self.redis.lpos, self._key("pending"), job_id) is not None

    def holder(self, job_id: str) -> str | None:
        """The token of the job's live lease, if any."""
        value = self._call(self.redis.get, self._key("lease:" + job_id))
        return value.decode() if value is not None else None

    def holds(self, job_id: str, token: str) -> bool:
        """Whether ``token`` is the job's live lease (the fencing check before every write of a worker)."""
        return bool(token) and self.holder(job_id) == token

    def orphans(self, job_ids: list[str]) -> list[str]:
        """Of the unfinished ``job_ids``, those nobody holds and nothing queues: their worker died or lost its
        lease, or Redis lost the queue (restarted without persistence). Stale holder entries are removed."""
        found = []
        for job_id in job_ids:
            if self.holder(job_id) is None and not self.waiting(job_id):
                self._call(self.redis.hdel, self._key("holders"), job_id)
                found.append(job_id)
        return found

    def pending_count(self) -> int:
        pipe = self.redis.pipeline()
        pipe.llen(self._key("pending"))
        pipe.zcard(self._key("delayed"))
        return sum(self._call(pipe.execute))

    def holders(self) -> dict[str, dict[str, Any]]:
        """Job id -> {worker, since} for every live lease."""
        raw = self._call(self.redis.hgetall, self._key("holders"))
        held = {key.decode(): json.loads(value) for key, value in raw.items()}
        return {job: info for job, info in held.items() if self.holder(job) is not None}

    def workers(self, within: float | None = None) -> dict[str, float]:
        """Worker name -> time of its last heartbeat, for the workers heard from within ``within`` seconds
        (default: three lease periods)."""
        within = 3 * self.lease_seconds if within is None else within
        raw = self._call(self.redis.hgetall, self._key("workers"))
        now = time.time()
        return {name.decode(): float(seen) for name, seen in raw.items() if now - float(seen) <= within}

    # ------------------------------------------------------------------ workers
    def claim(self, worker: str) -> Lease | None:
        """Take the next job with a lease of ``lease_seconds``; ``None`` when the queue is empty."""
        token = f"{worker}/{secrets.token_hex(8)}"
        now = time.time()
        holder = json.dumps({"worker": worker, "since": now})
        job = self._call(self._claim, keys=[self._key("pending"), self._key("delayed"), self._key("holders")],
                         args=[token, int(self.lease_seconds * 1000), now, self._key("lease:"), holder])
        return Lease(job.decode(), token, worker, now) if job else None

    def renew(self, lease: Lease) -> bool:
        """Extend the lease; ``False`` when it is no longer this worker's (expired, taken over)."""
        return bool(self._call(self._renew, keys=[self._key("lease:" + lease.job_id)],
                               args=[lease.token, int(self.lease_seconds * 1000)]))

    def release(self, lease: Lease) -> bool:
        """Give the lease up (the job is finished, or handed back); ``False`` when it was no longer held."""
        return bool(self._call(self._release, keys=[self._key("lease:" + lease.job_id), self._key("holders")],
                               args=[lease.token, lease.job_id]))

    def heartbeat(self, worker: str) -> None:
        self._call(self.redis.hset, self._key("workers"), worker, time.time())
