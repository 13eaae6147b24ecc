CREATE TABLE workspace (
    id UUID PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE branch (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, code)
);
CREATE TABLE workspace_member (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL REFERENCES workspace(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, workspace_id)
);
CREATE INDEX workspace_member_workspace ON workspace_member(workspace_id, created_at);
CREATE TABLE branch_member (
    id UUID PRIMARY KEY,
    member_id UUID NOT NULL REFERENCES workspace_member(id) ON DELETE CASCADE,
    branch_id UUID NOT NULL REFERENCES branch(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (member_id, branch_id)
);
CREATE TABLE role (
    id UUID PRIMARY KEY,
    workspace_id UUID REFERENCES workspace(id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- NULL never equals NULL in a plain UNIQUE, so global roles (workspace_id NULL) share the nil id.
CREATE UNIQUE INDEX role_scope_code ON role((COALESCE(workspace_id, '00000000-0000-0000-0000-000000000000'::uuid)), code);
CREATE TABLE member_role (
    member_id UUID NOT NULL REFERENCES workspace_member(id) ON DELETE CASCADE,
    role_id UUID NOT NULL REFERENCES role(id) ON DELETE CASCADE,
    PRIMARY KEY (member_id, role_id)
);
CREATE TABLE branch_member_role (
    branch_member_id UUID NOT NULL REFERENCES branch_member(id) ON DELETE CASCADE,
    role_id UUID NOT NULL REFERENCES role(id) ON DELETE CASCADE,
    PRIMARY KEY (branch_member_id, role_id)
);
INSERT INTO role (id, workspace_id, code, permissions, created_at, updated_at) VALUES
    ('00000000-0000-7000-8000-000000000001', NULL, 'admin', '["*"]', 0, 0),
    ('00000000-0000-7000-8000-000000000002', NULL, 'user', '[]', 0, 0);
