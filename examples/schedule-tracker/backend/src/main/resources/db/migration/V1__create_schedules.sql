CREATE TABLE schedules (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       VARCHAR(200) NOT NULL,
    description TEXT,
    starts_at   TIMESTAMPTZ  NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    confirmed   BOOLEAN      NOT NULL DEFAULT FALSE,
    events      INTEGER      NOT NULL DEFAULT 0
);

CREATE INDEX schedules_starts_at_idx ON schedules (starts_at);
