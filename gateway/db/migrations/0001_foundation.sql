-- Foundation: the audit trail and the quarantine of unparseable pulled messages.

-- Who saw or did what to which customer. Append-only: enforced by trigger below.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,                -- user name, or source:<name> for systems
    actor_role   text,
    action       text NOT NULL,                -- customer.view, screenpop, link, unlink, export, login, login.failed ...
    customer_id  bigint,
    interaction_id uuid,
    reason       text,
    request_id   text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_customer_idx ON audit_log (customer_id, at DESC) WHERE customer_id IS NOT NULL;
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Pulled messages (AMI frames, IMAP mails) that could not be parsed: kept with their raw bytes.
CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    adapter      text NOT NULL,                -- ami, imap, ...
    source       text NOT NULL,
    source_ref   text,                         -- e.g. mailbox/uidvalidity/uid, or the AMI connection and offset
    error        text NOT NULL,
    raw          bytea NOT NULL
);
CREATE UNIQUE INDEX quarantine_ref_uniq ON quarantine (adapter, source, source_ref) WHERE source_ref IS NOT NULL;
CREATE INDEX quarantine_at_idx ON quarantine (at DESC);
