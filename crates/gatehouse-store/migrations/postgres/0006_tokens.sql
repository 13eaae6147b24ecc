-- Personal access tokens, stored by the SHA-256 of their text only. Revoked rows stay, so
-- a revoked token coming back is recognised (and audited) rather than merely unknown.
CREATE TABLE personal_access_token (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    name TEXT NOT NULL,
    scopes TEXT,
    workspace_id UUID,
    branch_id UUID,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    revoked_at BIGINT
);
CREATE INDEX personal_access_token_account ON personal_access_token(account_id, created_at);
-- Service accounts: accounts that never sign in interactively and authenticate with API
-- keys (an access key, public, and a secret key stored by its SHA-256 only).
ALTER TABLE account ADD COLUMN kind TEXT NOT NULL DEFAULT 'USER';
CREATE TABLE api_key (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    access_key TEXT NOT NULL UNIQUE,
    secret_hash BYTEA NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    rotated_at BIGINT
);
CREATE INDEX api_key_account ON api_key(account_id, created_at);
