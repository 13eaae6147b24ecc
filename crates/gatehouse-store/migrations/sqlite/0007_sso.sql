-- Upstream sign-in (SSO): identities linked to accounts, providers stored by the admin
-- API (client secret sealed), and whether an account's e-mail is known to be its own.
ALTER TABLE account ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT TRUE;
-- Self-registered accounts have not confirmed their e-mail (no confirmation mail yet).
UPDATE account SET email_verified = FALSE
 WHERE id IN (SELECT target_id FROM audit_event
               WHERE action = 'register' AND outcome = 'success' AND target_id IS NOT NULL);
CREATE TABLE external_identity (
    id BLOB PRIMARY KEY,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    email TEXT,
    created_account BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (provider, subject)
);
CREATE INDEX external_identity_account ON external_identity(account_id);
CREATE TABLE sso_provider (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
