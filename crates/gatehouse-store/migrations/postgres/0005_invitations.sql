-- Invitations: adding an existing account to a workspace is an offer the account accepts
-- (or declines); only an instance admin adds members directly. Branches and roles are
-- kept as JSON arrays (branch ids, role codes) and re-checked when the invitation is
-- accepted. At most one pending invitation per (workspace, account).
CREATE TABLE workspace_invitation (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    account_id UUID NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    invited_by UUID REFERENCES account(id) ON DELETE SET NULL,
    branch_ids TEXT NOT NULL,
    roles TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE UNIQUE INDEX workspace_invitation_pending ON workspace_invitation(workspace_id, account_id) WHERE status = 'PENDING';
CREATE INDEX workspace_invitation_workspace ON workspace_invitation(workspace_id, created_at);
CREATE INDEX workspace_invitation_account ON workspace_invitation(account_id, status);

-- Access tokens denied before their expiry while their session lives on (the one replaced
-- by a branch switch): the cache's `deny:<jti>` marks are rebuilt from here at start and
-- on every key refresh, so a restart or a cache flush does not bring them back.
CREATE TABLE denied_access_token (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX denied_access_token_expires ON denied_access_token(expires_at);
