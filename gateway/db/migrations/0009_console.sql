-- The supervisor console: free-text search of the contact log, and quality review (质检).

-- The text of an event a supervisor may search: its subject, a wrap-up note, an email's text.
CREATE FUNCTION event_search_text(subject text, attributes jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(subject, '') || ' ' || coalesce(attributes ->> 'note', '') || ' '
           || coalesce(attributes ->> 'body_text', '');

-- Trigram indexes make ILIKE '%…%' fast, Chinese included (pg_trgm takes CJK characters as word
-- characters in a UTF-8 database). pg_trgm is a contrib module: where it is not installed (the embedded
-- PostgreSQL) the console's search still works, by scanning (see README, "Contact log").
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX events_search_trgm_idx ON events
            USING gin (event_search_text(subject, attributes) gin_trgm_ops)
            WHERE subject IS NOT NULL OR attributes ? 'note' OR attributes ? 'body_text';
    ELSE
        RAISE NOTICE 'pg_trgm is not available: console text search will scan';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_trgm cannot be created by this role: console text search will scan';
END
$$;

-- The contact log filters by channel and by queue within a time range, newest first.
CREATE INDEX interactions_channel_started_idx ON interactions (channel, started_at DESC, id DESC);

-- Quality review: a supervisor draws a random sample of interactions, then scores each on the form
-- of config/qa_form.toml (the form's id and version are kept with every score).
CREATE TABLE qa_samples (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    criteria     jsonb NOT NULL,               -- the filter the sample was drawn from
    requested    integer NOT NULL CHECK (requested > 0),
    drawn        integer NOT NULL
);

CREATE TABLE qa_reviews (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sample_id      bigint NOT NULL REFERENCES qa_samples (id),
    interaction_id uuid NOT NULL,               -- interactions(id); no foreign key: seeding truncates interactions
    agent_id       text,
    channel        text NOT NULL,
    queue          text,
    started_at     timestamptz NOT NULL,       -- of the interaction
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'scored')),
    form_id        text,
    form_version   integer,
    scores         jsonb NOT NULL DEFAULT '{}'::jsonb,     -- item key -> points
    score_percent  numeric(5, 2) CHECK (score_percent BETWEEN 0 AND 100),
    comment        text,
    reviewer       text,
    reviewed_at    timestamptz,
    UNIQUE (sample_id, interaction_id),
    CHECK (status = 'pending' OR (score_percent IS NOT NULL AND reviewed_at IS NOT NULL))
);
CREATE INDEX qa_reviews_sample_idx ON qa_reviews (sample_id, id);
CREATE INDEX qa_reviews_scored_idx ON qa_reviews (reviewed_at, agent_id) WHERE status = 'scored';
