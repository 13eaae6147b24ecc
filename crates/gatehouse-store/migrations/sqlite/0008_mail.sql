-- Mail: the durable outbox and single-use e-mail codes.
--
-- A message is written here in the same transaction as the change that causes it; the
-- background sender leases due rows (lease_owner, lease_until), delivers them, and marks
-- them SENT or, after mail.give_up_after_seconds, FAILED. The bodies hold codes and links
-- in clear, so they are emptied as soon as a row is finished; finished rows are pruned.
CREATE TABLE mail_outbox (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id BLOB REFERENCES account(id) ON DELETE SET NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner BLOB,
    lease_until BIGINT,
    finished_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX mail_outbox_finished ON mail_outbox(finished_at) WHERE status <> 'PENDING';

-- Single-use codes sent by e-mail (password reset, e-mail verification, e-mail change):
-- SHA-256 of the code only. At most one live code per account and purpose: a new request
-- marks the previous one SUPERSEDED.
CREATE TABLE email_code (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    code_hash BLOB NOT NULL,
    new_email TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE UNIQUE INDEX email_code_live ON email_code(account_id, purpose) WHERE status = 'PENDING';

-- Accounts whose e-mail address is not confirmed yet (self-registered while the instance
-- setting requireEmailVerification is on). Every other account counts as confirmed.
CREATE TABLE email_unverified (
    account_id BLOB PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
