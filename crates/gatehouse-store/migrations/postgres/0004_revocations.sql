-- Revoked sessions by the time they were revoked: each instance rebuilds its cache's
-- revocation marks from the store at start and periodically (the store is the source of
-- truth; the cache only the fast path).
CREATE INDEX auth_session_revoked_at ON auth_session(revoked_at) WHERE revoked_at IS NOT NULL;
