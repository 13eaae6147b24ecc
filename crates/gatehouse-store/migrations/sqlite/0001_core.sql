CREATE TABLE account (
    id BLOB PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    username TEXT UNIQUE,
    display_name TEXT,
    status TEXT NOT NULL,
    must_change_password BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT
);
CREATE TABLE account_role (
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);
CREATE TABLE credential (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    secret TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX credential_one_password ON credential(account_id) WHERE type = 'PASSWORD';
CREATE TABLE auth_session (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    auth_methods TEXT NOT NULL,
    workspace_id BLOB,
    branch_id BLOB,
    ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX auth_session_account ON auth_session(account_id, status);
CREATE TABLE session_token (
    hash BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES auth_session(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX session_token_session ON session_token(session_id);
CREATE TABLE signing_key (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE instance_setting (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE audit_event (
    id BLOB PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id BLOB,
    action TEXT NOT NULL,
    target_id BLOB,
    outcome TEXT NOT NULL,
    reason TEXT,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    details TEXT NOT NULL
);
CREATE INDEX audit_event_at ON audit_event(at);
CREATE INDEX audit_event_target ON audit_event(target_id, at);
CREATE INDEX audit_event_action ON audit_event(action, at);
