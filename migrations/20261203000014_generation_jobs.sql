-- Read model of projection "generation" (seed 002's /api/proxy/*): one row
-- per GenerationJob stream. `status` as draw/result answers it: pending
-- (points held, not yet taken upstream), processing, completed, failed.
CREATE TABLE generation_jobs
(
    job_id      uuid PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    kind        text        NOT NULL,
    model       text        NOT NULL,
    price       bigint      NOT NULL,
    status      text        NOT NULL,
    progress    integer     NOT NULL DEFAULT 0,
    upstream_id text,
    result_url  text,
    error       text,
    deadline    timestamptz NOT NULL,
    settled     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- the poller's work: open jobs, and ended ones whose hold is not closed
CREATE INDEX generation_jobs_open ON generation_jobs (deadline) WHERE status IN ('pending', 'processing');
CREATE INDEX generation_jobs_unsettled ON generation_jobs (updated_at) WHERE NOT settled AND status IN ('completed', 'failed');
CREATE INDEX generation_jobs_owner ON generation_jobs (owner_id, status);
