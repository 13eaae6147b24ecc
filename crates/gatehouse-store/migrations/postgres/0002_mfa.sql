ALTER TABLE credential ADD COLUMN last_used_step BIGINT;
CREATE UNIQUE INDEX credential_one_totp ON credential(account_id) WHERE type = 'TOTP';
CREATE INDEX credential_account_type ON credential(account_id, type, status);
CREATE TABLE trusted_device (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL UNIQUE,
    ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX trusted_device_account ON trusted_device(account_id, expires_at);
