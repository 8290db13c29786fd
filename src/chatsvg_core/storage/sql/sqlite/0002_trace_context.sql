-- chatsvg-core schema, version 2: the submitter's trace context (W3C traceparent
-- and tracestate, as compact JSON), carried to the worker through the job record.
ALTER TABLE chatsvg_jobs ADD COLUMN trace_context TEXT;
