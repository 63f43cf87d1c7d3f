-- Contact history: append-only events (partitioned by month), their dedupe keys, and interactions.

-- (source, source_event_id) is unique across all time. A unique index on the partitioned events
-- table would have to include the partition key, so the dedupe key lives in its own table,
-- written in the same transaction as the event.
CREATE TABLE event_keys (
    source          text NOT NULL,
    source_event_id text NOT NULL,
    event_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    interaction_id  uuid NOT NULL,
    PRIMARY KEY (source, source_event_id)
);

CREATE TABLE events (
    id              uuid NOT NULL,                 -- UUIDv7, assigned by the gateway
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    source          text NOT NULL,
    source_event_id text NOT NULL,
    channel         text NOT NULL,
    type            text NOT NULL,
    interaction_id  uuid NOT NULL,
    external_interaction_id text,                  -- the channel's own interaction id
    customer_id     bigint,                        -- as resolved at ingest (the interaction may be linked later)
    identification  text NOT NULL,                 -- identified / ambiguous / unidentified, at ingest
    identifiers     jsonb NOT NULL DEFAULT '[]',   -- [{kind, masked}] : never raw values
    agent_id        text,
    queue           text,
    direction       text,
    subject         text,
    outcome         text,
    reason          text,
    attributes      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (occurred_at, id)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_interaction_idx ON events (interaction_id, occurred_at);
CREATE INDEX events_customer_idx ON events (customer_id, occurred_at DESC) WHERE customer_id IS NOT NULL;

-- Partitions are created ahead of time by the gateway (gateway/events/partitions.py) and on demand
-- for an event in a month that has none yet; this creates the one month partition for [start, start+1 month).
CREATE FUNCTION ensure_events_partition(month_start date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    name text := format('events_y%sm%s', to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
BEGIN
    IF to_regclass(name) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('events_partition:' || name));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           name, to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00',
                           to_char(month_start + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
        END IF;
    END IF;
    RETURN name;
END
$$;

CREATE TABLE interactions (
    id               uuid PRIMARY KEY,             -- uuid5 of (source, external id): computable in-process
    source           text NOT NULL,
    external_id      text NOT NULL,
    kind             text NOT NULL,                -- call, session, thread, case, visit
    channel          text NOT NULL,
    customer_id      bigint,
    identification   text NOT NULL DEFAULT 'unidentified',  -- identified / ambiguous / unidentified
    candidates       bigint[] NOT NULL DEFAULT '{}',        -- when ambiguous: every candidate, never a guess
    link_strength    smallint NOT NULL DEFAULT 0,  -- 0 none, 1 weak id (phone, email, device), 2 strong id, 9 manual
    linked_by        text,                         -- auto:<identifier kind> or user:<name>
    identifier_digests bytea[] NOT NULL DEFAULT '{}',
    status           text NOT NULL,
    state_rank       smallint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL,
    answered_at      timestamptz,
    ended_at         timestamptz,
    last_event_at    timestamptz NOT NULL,
    handle_seconds   double precision GENERATED ALWAYS AS
                         (extract(epoch FROM (ended_at - answered_at))) STORED,
    talk_seconds     double precision,
    hold_seconds     double precision,
    agent_id         text,
    queue            text,
    direction        text,
    subject          text,
    outcome          text,
    reason           text,
    event_count      integer NOT NULL DEFAULT 0,
    last_type        text,
    updated_at       timestamptz NOT NULL DEFAULT now()
    -- (source, external_id) is unique by construction: id is uuid5 of it (gateway.events.ingest.interaction_uuid)
);
CREATE INDEX interactions_customer_idx ON interactions (customer_id, started_at DESC, id DESC)
    WHERE customer_id IS NOT NULL;
CREATE INDEX interactions_started_idx ON interactions (started_at DESC, id DESC);
CREATE INDEX interactions_agent_idx ON interactions (agent_id, started_at DESC) WHERE agent_id IS NOT NULL;
CREATE INDEX interactions_digests_idx ON interactions USING gin (identifier_digests);

-- Manual links and unlinks, and automatic ones, are also written to audit_log; this keeps the
-- interaction's own link history for the interaction page.
CREATE TABLE interaction_links (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    interaction_id uuid NOT NULL REFERENCES interactions(id),
    at             timestamptz NOT NULL DEFAULT now(),
    action         text NOT NULL,                  -- link / unlink / auto
    customer_id    bigint,
    actor          text NOT NULL,
    reason         text
);
CREATE INDEX interaction_links_interaction_idx ON interaction_links (interaction_id, at);
