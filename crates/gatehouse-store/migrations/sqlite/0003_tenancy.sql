CREATE TABLE workspace (
    id BLOB PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE branch (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, code)
);
CREATE TABLE workspace_member (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    workspace_id BLOB NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, workspace_id)
);
CREATE INDEX workspace_member_workspace ON workspace_member(workspace_id, created_at);
CREATE TABLE branch_member (
    id BLOB PRIMARY KEY,
    member_id BLOB NOT NULL REFERENCES workspace_member(id) ON DELETE CASCADE,
    branch_id BLOB NOT NULL REFERENCES branch(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (member_id, branch_id)
);
CREATE TABLE role (
    id BLOB PRIMARY KEY,
    workspace_id BLOB REFERENCES workspace(id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- NULL never equals NULL in a plain UNIQUE, so global roles (workspace_id NULL) share the nil id.
CREATE UNIQUE INDEX role_scope_code ON role(COALESCE(workspace_id, X'00000000000000000000000000000000'), code);
CREATE TABLE member_role (
    member_id BLOB NOT NULL REFERENCES workspace_member(id) ON DELETE CASCADE,
    role_id BLOB NOT NULL REFERENCES role(id) ON DELETE CASCADE,
    PRIMARY KEY (member_id, role_id)
);
CREATE TABLE branch_member_role (
    branch_member_id BLOB NOT NULL REFERENCES branch_member(id) ON DELETE CASCADE,
    role_id BLOB NOT NULL REFERENCES role(id) ON DELETE CASCADE,
    PRIMARY KEY (branch_member_id, role_id)
);
INSERT INTO role (id, workspace_id, code, permissions, created_at, updated_at) VALUES
    (X'00000000000070008000000000000001', NULL, 'admin', '["*"]', 0, 0),
    (X'00000000000070008000000000000002', NULL, 'user', '[]', 0, 0);
