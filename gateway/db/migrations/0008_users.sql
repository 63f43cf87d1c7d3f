-- People who log in: agents, supervisors (班组长) and admins. Passwords are argon2id hashes.
CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    role           text NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    agent_id       text CHECK (agent_id ~ '^[A-Za-z0-9._-]{1,64}$'),   -- 坐席号: an agent's CTI id
    password_hash  text NOT NULL,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- sessions created before this instant are void (a password reset logs the user out everywhere)
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'agent' OR agent_id IS NOT NULL)
);
CREATE UNIQUE INDEX users_agent_id_uniq ON users (agent_id) WHERE agent_id IS NOT NULL;
