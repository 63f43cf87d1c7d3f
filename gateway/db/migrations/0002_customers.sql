-- The customer read model, fed by core banking (issue 3; DESIGN.md §1, §4).
-- Every customer-owned table carries customer_id and has it first in its primary key, so that the
-- store can be distributed by customer (Citus) and a customer's rows sit together.

CREATE TABLE customers (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_no          text UNIQUE NOT NULL,
    name                 text NOT NULL,
    customer_type        text NOT NULL CHECK (customer_type IN ('personal', 'corporate')),
    segment              text NOT NULL CHECK (segment IN ('private_banking', 'wealth', 'affluent', 'mass',
                                                          'sme', 'corporate')),
    tier                 text NOT NULL CHECK (tier IN ('diamond', 'platinum', 'gold', 'silver', 'standard')),
    vip                  boolean NOT NULL DEFAULT false,
    home_branch          text,
    relationship_manager text,
    service_group        text,
    preferred_language   text NOT NULL DEFAULT 'zh-CN',
    preferred_channel    text,
    do_not_call          boolean NOT NULL DEFAULT false,
    marketing_opt_out    boolean NOT NULL DEFAULT false,
    risk_rating          text CHECK (risk_rating IN ('C1', 'C2', 'C3', 'C4', 'C5')),
    aum_band             text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Identifiers as keyed hashes (HMAC-SHA256 of "kind:normalized"), with a masked form for display.
-- origin 'core': from the core-banking feed (a PUT replaces these); 'learned': linked by ingest
-- (e.g. a device id seen with a verified login), kept across PUTs. key_version: fingerprint of the
-- key that made the digest (gateway.identity.key_version), used by `contact-gateway rehash`.
CREATE TABLE customer_identifiers (
    customer_id  bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('phone', 'email', 'customer_no', 'national_id', 'card_no',
                                               'account_no', 'device_id', 'online_user_id')),
    digest       bytea NOT NULL,
    masked       text NOT NULL,
    key_version  smallint NOT NULL DEFAULT 0,
    origin       text NOT NULL DEFAULT 'core' CHECK (origin IN ('core', 'learned')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, customer_id)
);
CREATE INDEX customer_identifiers_customer_idx ON customer_identifiers (customer_id);

-- What the customer has: accounts, cards, deposits, loans, wealth products. Numbers stored masked only.
CREATE TABLE holdings (
    customer_id    bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    id             bigint GENERATED ALWAYS AS IDENTITY,
    product_type   text NOT NULL CHECK (product_type IN ('current_account', 'savings_account', 'time_deposit',
                                                         'debit_card', 'credit_card', 'personal_loan',
                                                         'mortgage', 'corporate_loan', 'wealth_product',
                                                         'fund', 'insurance', 'precious_metal')),
    product_name   text,
    masked_number  text,
    balance        numeric(20, 2),
    balance_band   text,
    currency       char(3) NOT NULL DEFAULT 'CNY',
    status         text NOT NULL CHECK (status IN ('active', 'dormant', 'frozen', 'closed')),
    opened_on      date,
    PRIMARY KEY (customer_id, id)
);

-- What the customer can do, per channel: enabled, limits, blocks and freezes with reason and date.
CREATE TABLE entitlements (
    customer_id        bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    channel            text NOT NULL CHECK (channel IN ('online_banking', 'mobile_banking', 'corporate_banking',
                                                        'phone_banking', 'wechat', 'atm', 'counter',
                                                        'quick_pay')),
    enabled            boolean NOT NULL,
    daily_limit        numeric(20, 2),
    per_transaction_limit numeric(20, 2),
    currency           char(3) NOT NULL DEFAULT 'CNY',
    restriction        text CHECK (restriction IN ('block', 'freeze')),
    restriction_reason text,
    restricted_at      timestamptz,
    PRIMARY KEY (customer_id, id),
    CHECK (restriction IS NOT NULL OR (restriction_reason IS NULL AND restricted_at IS NULL))
);

-- Complaints, service requests and voice-of-the-customer feedback, with their SLA.
CREATE TABLE cases (
    customer_id  bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    case_ref     text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('complaint', 'service_request', 'feedback')),
    category     text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    channel      text,
    summary      text,
    opened_at    timestamptz NOT NULL,
    due_at       timestamptz,
    closed_at    timestamptz,
    sla_hours    integer CHECK (sla_hours > 0),
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, case_ref)
);
CREATE INDEX cases_open_due_idx ON cases (due_at) WHERE status IN ('open', 'in_progress');

-- Credit applications and their stage: accepted → investigation & rating → approval → disbursement.
CREATE TABLE credit_applications (
    customer_id       bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    id                bigint GENERATED ALWAYS AS IDENTITY,
    application_ref   text NOT NULL,
    product           text NOT NULL,
    amount            numeric(20, 2) NOT NULL CHECK (amount > 0),
    currency          char(3) NOT NULL DEFAULT 'CNY',
    stage             text NOT NULL CHECK (stage IN ('accepted', 'investigation', 'approval', 'disbursement')),
    status            text NOT NULL CHECK (status IN ('in_progress', 'approved', 'rejected', 'withdrawn',
                                                      'disbursed')),
    accepted_at       timestamptz NOT NULL,
    investigation_at  timestamptz,
    approval_at       timestamptz,
    disbursement_at   timestamptz,
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, application_ref)
);

-- Reception-day visits and other appointments at a branch.
CREATE TABLE appointments (
    customer_id     bigint NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    appointment_ref text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('reception_day', 'branch_visit', 'advisor_call')),
    scheduled_at    timestamptz NOT NULL,
    branch          text,
    host            text,
    purpose         text,
    status          text NOT NULL CHECK (status IN ('booked', 'attended', 'cancelled', 'no_show')),
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, appointment_ref)
);
