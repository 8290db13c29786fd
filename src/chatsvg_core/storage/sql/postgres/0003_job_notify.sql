-- chatsvg-core schema, version 3 (PostgreSQL): wake waiters when a job moves.
-- A job that changes status or attempt sends NOTIFY chatsvg_job with payload
-- '<schema>:<job id>' when its transaction commits, so Engine.wait() and
-- Engine.updates() sleep on LISTEN instead of polling. Heartbeats (lease
-- extensions only) send nothing. Listeners filter by schema, since several
-- schemas may share one database.

CREATE FUNCTION chatsvg_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        PERFORM pg_notify('chatsvg_job', TG_TABLE_SCHEMA || ':' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER chatsvg_jobs_notify AFTER INSERT OR UPDATE ON chatsvg_jobs
    FOR EACH ROW EXECUTE FUNCTION chatsvg_notify_job();
