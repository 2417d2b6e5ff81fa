"""Durable background work: a job table with leases, and the worker loop that runs it.

1. A request commits its resource change, its operation and a job together.
2. The worker claims the job (a lease; exactly once across workers), runs its handler and renews
   the lease while it runs (the heartbeat).
3. Success marks the job done; a failure retries with backoff; running out of attempts calls the
   handler's ``give_up`` so the operation ends Failed instead of hanging.
4. A worker that dies leaves its lease to expire; another worker (or the restarted one) claims the job again.
"""
