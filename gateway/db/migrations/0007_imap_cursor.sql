-- The IMAP poller's cursor: per account and mailbox, the UIDVALIDITY seen and the highest UID whose
-- mail is committed (as events or in quarantine). After a UIDVALIDITY change the poller re-reads the
-- mailbox from UID 1; events deduplicate on (source, source_event_id = Message-ID) anyway.
CREATE TABLE imap_cursor (
    account      text NOT NULL,                -- user@host:port
    mailbox      text NOT NULL,
    uidvalidity  bigint NOT NULL,
    last_uid     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, mailbox)
);
